/** POST /v1/subscriptions of the service at `url`, `body` as JSON; `headers` add to the JSON
 *  content type (the admin token, where the service has one). */
export function postSubscription(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${url}/v1/subscriptions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}
