// The API client: the key lives in this tab's sessionStorage and goes out as a Bearer header on
// every call. A 401 signs the user out.

const KEY = 'invariance.apiKey';

export function getKey() {
  return sessionStorage.getItem(KEY);
}
/** @param {string} key */
export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}
export function clearKey() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  /** @param {number} status @param {Record<string, unknown>} problem */
  constructor(status, problem) {
    super(String(problem.detail ?? problem.title ?? `HTTP ${status}`));
    this.status = status;
    this.code = String(problem.code ?? '');
    this.problem = problem;
  }
}

/** Called on 401 (set by the app). @type {() => void} */
let onUnauthorized = () => undefined;
/** @param {() => void} fn */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * @param {string} path
 * @param {{ method?: string, body?: unknown, key?: string, raw?: boolean }} [opts]
 */
async function request(path, opts = {}) {
  const key = opts.key ?? getKey();
  /** @type {Record<string, string>} */
  const headers = { accept: opts.raw ? '*/*' : 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method: opts.method ?? 'GET',
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    // JSON is always fresh (live status); images and charts may come from the HTTP cache.
    cache: opts.raw ? 'default' : 'no-store',
  });
  if (!res.ok) {
    let problem = {};
    try {
      problem = await res.json();
    } catch {
      problem = { detail: res.statusText };
    }
    if (res.status === 401 && !opts.key) onUnauthorized();
    throw new ApiError(res.status, problem);
  }
  return res;
}

/** GET (or other method) returning JSON. @param {string} path @param {Parameters<typeof request>[1]} [opts] */
export async function api(path, opts) {
  const res = await request(path, opts);
  return res.status === 204 ? null : res.json();
}

/** @type {Map<string, Promise<string>>} */
const blobUrls = new Map();

/**
 * An object URL for an authenticated binary resource (images, SVG charts): <img src> cannot send
 * the key. Cached for the session (dataset images never change).
 * @param {string} path
 */
export function blobUrl(path) {
  let hit = blobUrls.get(path);
  if (!hit) {
    hit = request(path, { raw: true })
      .then((r) => r.blob())
      .then((b) => URL.createObjectURL(b));
    hit.catch(() => blobUrls.delete(path));
    blobUrls.set(path, hit);
  }
  return hit;
}

/** @type {Map<string, Promise<unknown>>} */
const cache = new Map();
/** Cached GET for things that do not change (models, datasets, results of finished runs). @param {string} path */
export function cached(path) {
  let hit = cache.get(path);
  if (!hit) {
    hit = api(path);
    hit.catch(() => cache.delete(path));
    cache.set(path, hit);
  }
  return hit;
}

export function clearCache() {
  cache.clear();
  for (const p of blobUrls.values()) p.then((u) => URL.revokeObjectURL(u)).catch(() => undefined);
  blobUrls.clear();
}

/**
 * A dataset image with its label (the images route sends it as X-Sample-Label).
 * @param {string} path
 * @returns {Promise<{ url: string, label: number | null }>}
 */
export async function imageWithLabel(path) {
  const res = await request(path, { raw: true });
  const label = res.headers.get('x-sample-label');
  return { url: URL.createObjectURL(await res.blob()), label: label === null ? null : Number(label) };
}
