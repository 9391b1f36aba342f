/**
 * One interaction, as every part of the project sees it after decoding: the Avro
 * `pme.Interaction` record, the file formats and the synthetic generator all produce this.
 */
export interface Interaction {
  user: string;
  item: string;
  /** 1 for a positive (click, rating >= 4), 0 for a negative; values in between are allowed. */
  label: number;
  /** Event time, milliseconds since the epoch. */
  timestamp: number;
  /** Extra categorical fields (`genre`, `device`, ...), each becoming a `field=value` token. */
  fields: Record<string, string>;
}

/** A catalog entry (the `pme.Item` record). */
export interface CatalogItem {
  item: string;
  fields: Record<string, string>;
  active: boolean;
}

/** The token strings of an interaction: `user=U`, `item=I`, then `field=value` for each field. */
export function interactionTokens(event: Interaction): string[] {
  const tokens = [`user=${event.user}`, `item=${event.item}`];
  for (const key in event.fields) tokens.push(`${key}=${event.fields[key]}`);
  return tokens;
}
