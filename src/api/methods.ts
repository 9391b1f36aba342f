/**
 * Which methods each route answers, by path: fastify's router only says "no route", so a known
 * path asked with the wrong method would get 404; with this table it gets 405 and `Allow`.
 */

export class RouteMethods {
  /** Pattern source -> the pattern and its methods. */
  readonly #routes = new Map<string, { pattern: RegExp; methods: Set<string> }>();

  /** Records a route as fastify declares it (`/v1/tokens/:field/:value`, `/files/*`). */
  add(url: string, method: string | string[]): void {
    const source = url
      .split('/')
      .map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')))
      .join('/')
      .replace(/\*/g, '.*');
    let route = this.#routes.get(source);
    if (route === undefined) {
      route = { pattern: new RegExp(`^${source}$`), methods: new Set() };
      this.#routes.set(source, route);
    }
    for (const m of Array.isArray(method) ? method : [method]) {
      route.methods.add(m);
      // fastify answers HEAD wherever GET is (exposeHeadRoutes, on by default).
      if (m === 'GET') route.methods.add('HEAD');
    }
  }

  /** Methods some route answers at `path` (no query string), sorted; empty for an unknown path. */
  allowed(path: string): string[] {
    const methods = new Set<string>();
    for (const route of this.#routes.values())
      if (route.pattern.test(path)) for (const m of route.methods) methods.add(m);
    return [...methods].sort();
  }
}
