/**
 * Query strings are text, bodies are JSON. ajv runs without type coercion, so a body's `5` or
 * `null` is never taken for a string; this preValidation hook reads the query's numbers and
 * booleans where the route's querystring schema asks for them, and leaves anything else as
 * text for the schema to refuse (`querystring/k must be integer`).
 */
import type { FastifyRequest } from 'fastify';

interface PropertySchema {
  type?: string | string[];
}

function read(value: unknown, schema: PropertySchema | undefined): unknown {
  if (typeof value !== 'string' || schema?.type === undefined) return value;
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if ((types.includes('integer') || types.includes('number')) && /^-?\d+(\.\d+)?$/.test(value))
    return Number(value);
  if (types.includes('boolean') && (value === 'true' || value === 'false')) return value === 'true';
  return value;
}

export async function readQueryTypes(request: FastifyRequest): Promise<void> {
  const schema = request.routeOptions.schema?.querystring as
    | { properties?: Record<string, PropertySchema> }
    | undefined;
  const properties = schema?.properties;
  if (properties === undefined || request.query === null || typeof request.query !== 'object') return;
  const query = request.query as Record<string, unknown>;
  for (const name of Object.keys(query)) query[name] = read(query[name], properties[name]);
}
