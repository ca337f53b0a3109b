// The dashboard shell: sign-in, navigation, hash router and page lifecycle (timers of a page stop
// when the user leaves it).
import { ApiError, api, clearCache, clearKey, getKey, setKey, setUnauthorizedHandler } from './api.js';
import { h, replace } from './dom.js';
import { datasetPage, datasetsPage, modelPage, modelsPage } from './pages-catalog.js';
import { comparePage } from './pages-compare.js';
import { runPage } from './pages-run.js';
import { runsPage } from './pages-runs.js';
import { notice } from './ui.js';

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const nav = /** @type {HTMLElement} */ (document.getElementById('nav'));

/**
 * What a page gets: its container, timers that stop on navigation, and whether it is still shown.
 * @typedef {{ main: HTMLElement, interval: (fn: () => unknown, ms: number) => void, alive: () => boolean, title: (t: string) => void }} PageContext
 */

let generation = 0;
/** @type {Array<() => void>} */
let cleanups = [];

/** @returns {PageContext} */
function newContext() {
  for (const c of cleanups) c();
  cleanups = [];
  const mine = ++generation;
  return {
    main,
    alive: () => mine === generation,
    interval(fn, ms) {
      let busy = false;
      const t = setInterval(async () => {
        if (busy || mine !== generation) return;
        busy = true;
        try {
          await fn();
        } catch (err) {
          console.warn('refresh failed', err);
        } finally {
          busy = false;
        }
      }, ms);
      cleanups.push(() => clearInterval(t));
    },
    title(t) {
      document.title = `${t} \u2014 Invariance`;
    },
  };
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/runs';
  const [path, query = ''] = raw.split('?');
  return {
    parts: path.split('/').filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(query),
  };
}

function renderNav() {
  const { parts } = parseHash();
  const signedIn = Boolean(getKey());
  const link = (href, text, section) =>
    h('li', {}, h('a', { href, 'aria-current': parts[0] === section ? 'page' : undefined }, text));
  replace(
    nav,
    h(
      'ul',
      {},
      signedIn
        ? [
            link('#/runs', 'Runs', 'runs'),
            link('#/models', 'Models', 'models'),
            link('#/datasets', 'Datasets', 'datasets'),
          ]
        : [],
      h('li', {}, h('a', { href: '/docs/' }, 'API docs')),
      signedIn
        ? h(
            'li',
            {},
            h(
              'button',
              {
                type: 'button',
                class: 'link-button',
                onclick: () => {
                  clearKey();
                  clearCache();
                  location.hash = '#/signin';
                },
              },
              'Sign out',
            ),
          )
        : null,
    ),
  );
}

/** @param {PageContext} ctx @param {URLSearchParams} query */
function signinPage(ctx, query) {
  ctx.title('Sign in');
  const input = h('input', {
    id: 'api-key',
    name: 'api-key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'api-key-help',
  });
  const status = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    {
      class: 'signin',
      onsubmit: async (/** @type {SubmitEvent} */ e) => {
        e.preventDefault();
        const key = /** @type {HTMLInputElement} */ (input).value.trim();
        if (!key) return;
        replace(status, notice('Checking the key\u2026'));
        try {
          await api('/v1/models?limit=1', { key });
          setKey(key);
          clearCache();
          location.hash = query.get('next') || '#/runs';
        } catch (err) {
          const msg =
            err instanceof ApiError && (err.status === 401 || err.status === 403)
              ? 'This key was not accepted (unknown, revoked, or without the read scope).'
              : `Could not reach the service: ${err instanceof Error ? err.message : err}`;
          replace(status, notice(msg, 'error'));
          /** @type {HTMLInputElement} */ (input).focus();
        }
      },
    },
    h('label', { for: 'api-key' }, 'API key'),
    input,
    h(
      'p',
      { id: 'api-key-help', class: 'hint' },
      'The admin key is printed on the first start and saved in data/admin.key; admins create others with POST /v1/api-keys. ' +
        'The key stays in this browser tab (sessionStorage) and is sent as a Bearer header.',
    ),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    status,
  );
  replace(main, h('h1', { tabindex: '-1' }, 'Sign in'), form);
  /** @type {HTMLInputElement} */ (input).focus();
}

async function render() {
  const ctx = newContext();
  const { parts, query } = parseHash();
  renderNav();
  if (!getKey() && parts[0] !== 'signin') {
    location.replace(`#/signin?next=${encodeURIComponent(location.hash || '#/runs')}`);
    return;
  }
  replace(main, h('p', { class: 'muted', role: 'status' }, 'Loading\u2026'));
  try {
    switch (parts[0]) {
      case 'signin':
        signinPage(ctx, query);
        return;
      case 'runs':
        await (parts[1] ? runPage(ctx, parts[1]) : runsPage(ctx, query));
        break;
      case 'compare':
        await comparePage(ctx, parts[1], parts[2]);
        break;
      case 'models':
        await (parts[1] ? modelPage(ctx, parts[1]) : modelsPage(ctx, query));
        break;
      case 'datasets':
        await (parts[1] ? datasetPage(ctx, parts[1]) : datasetsPage(ctx, query));
        break;
      default:
        ctx.title('Not found');
        replace(
          main,
          h('h1', { tabindex: '-1' }, 'Not found'),
          h('p', {}, h('a', { href: '#/runs' }, 'Back to the runs')),
        );
    }
  } catch (err) {
    if (!ctx.alive()) return;
    ctx.title('Error');
    const text =
      err instanceof ApiError
        ? `${err.status} ${err.code}: ${err.message}`
        : `Something went wrong: ${err instanceof Error ? err.message : String(err)}`;
    replace(main, h('h1', { tabindex: '-1' }, 'Could not load this page'), notice(text, 'error'));
  }
}

let lastPath = '';
window.addEventListener('hashchange', () => {
  const path = location.hash.split('?')[0];
  const samePage = path === lastPath;
  lastPath = path;
  render().then(() => {
    if (!samePage) {
      const h1 = main.querySelector('h1');
      h1?.focus();
    }
  });
});
setUnauthorizedHandler(() => {
  clearKey();
  clearCache();
  if (!location.hash.startsWith('#/signin'))
    location.hash = `#/signin?next=${encodeURIComponent(location.hash)}`;
});
lastPath = location.hash.split('?')[0];
render();
