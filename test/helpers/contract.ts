// Validates real responses against openapi.yaml, so the contract cannot drift from the code.
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import { loadOpenApi } from '../../src/http/routes/openapi.js';

type Json = Record<string, unknown>;
const { document } = loadOpenApi();
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: 'openapi', components: (document.components ?? {}) as Json });

function rewriteRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (node && typeof node === 'object') {
    const out: Json = {};
    for (const [k, v] of Object.entries(node as Json)) {
      out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `openapi${v}` : rewriteRefs(v);
    }
    return out;
  }
  return node;
}

function resolve(node: unknown): Json {
  let cur = node as Json;
  while (cur && typeof cur.$ref === 'string') {
    const parts = (cur.$ref as string).replace(/^#\//, '').split('/');
    cur = parts.reduce<Json>((o, p) => o[p] as Json, document as Json);
  }
  return cur;
}

export function specPaths(): Record<string, Json> {
  return (document.paths ?? {}) as Record<string, Json>;
}

/** Checks status and body of a response against the operation `method path` in the spec. */
export function expectMatchesSpec(method: string, path: string, res: LightMyRequestResponse): void {
  const op = specPaths()[path]?.[method.toLowerCase()] as Json | undefined;
  expect(op, `${method} ${path} is not in openapi.yaml`).toBeDefined();
  const responses = (op?.responses ?? {}) as Json;
  const declared = responses[String(res.statusCode)] ?? responses.default;
  expect(declared, `${method} ${path} does not declare status ${res.statusCode}`).toBeDefined();
  const response = resolve(declared);
  const content = response.content as Json | undefined;
  if (!content || res.statusCode === 204) return;
  const type = String(res.headers['content-type'] ?? '')
    .split(';')[0]
    .trim();
  const media = content[type] as Json | undefined;
  expect(media, `${method} ${path} ${res.statusCode} does not declare ${type}`).toBeDefined();
  const schema = media?.schema;
  if (!schema) return;
  const validate = ajv.compile(rewriteRefs(schema) as Json);
  const ok = validate(res.json());
  expect(ok, `${method} ${path} ${res.statusCode}: ${ajv.errorsText(validate.errors)}`).toBe(true);
}
