// Models and datasets: lists, and one of each with metadata, layers, class counts and thumbnails.
import { api, cached, imageWithLabel } from './api.js';
import { barChart } from './charts.js';
import { h, replace } from './dom.js';
import * as f from './format.js';
import { dl, notice, section, table } from './ui.js';

const THUMBNAILS = 12;

/** Next-page link for a list page. @param {string} base @param {string | null} next */
function pager(base, next, cursor) {
  return h(
    'nav',
    { class: 'pager', 'aria-label': 'Pages' },
    cursor ? h('a', { href: base, class: 'button' }, 'First page') : null,
    next
      ? h('a', { href: `${base}?cursor=${encodeURIComponent(next)}`, class: 'button' }, 'Next page \u2192')
      : h('span', { class: 'muted' }, 'Last page'),
  );
}

/** @param {import('./app.js').PageContext} ctx @param {URLSearchParams} q */
export async function modelsPage(ctx, q) {
  ctx.title('Models');
  const cursor = q.get('cursor');
  const page = await api(`/v1/models?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
  replace(
    ctx.main,
    h('h1', { tabindex: '-1' }, 'Models'),
    page.items.length === 0
      ? notice('No models yet: upload one with POST /v1/models (see the README).')
      : table({
          cards: true,
          caption: 'Models, newest first',
          head: ['Name', 'Version', 'Tags', 'Input', 'Layers', 'Opset', 'Size', 'Uploaded'],
          numeric: [4, 5, 6],
          rows: page.items.map((m) => [
            h('a', { href: `#/models/${m.id}` }, m.name),
            m.version ?? '\u2014',
            m.tags.length ? m.tags.map((t) => h('span', { class: 'tag' }, t)) : '\u2014',
            m.inputs.map((i) => `${i.name} ${f.shape(i.shape)}`).join('; '),
            String(m.layers.length),
            m.opset === null ? '\u2014' : String(m.opset),
            f.bytes(m.sizeBytes),
            f.date(m.createdAt),
          ]),
        }),
    pager('#/models', page.nextCursor, cursor),
  );
}

/** @param {import('./app.js').PageContext} ctx @param {string} id */
export async function modelPage(ctx, id) {
  const m = await cached(`/v1/models/${id}`);
  const title = `${m.name}${m.version ? ` v${m.version}` : ''}`;
  ctx.title(title);
  const p = m.preprocessing;
  replace(
    ctx.main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/models' }, 'Models'), ' / ', m.name),
    h('h1', { tabindex: '-1' }, title),
    h('p', {}, h('a', { href: `#/runs?model=${m.id}`, class: 'button' }, 'Runs of this model')),
    section(
      'metadata',
      'Metadata',
      dl([
        ['Id', h('code', {}, m.id)],
        ['sha256', h('code', { class: 'wrap' }, m.sha256)],
        ['Tags', m.tags.length ? m.tags.join(', ') : '\u2014'],
        ['Opset', m.opset === null ? '\u2014' : String(m.opset)],
        ['Size', f.bytes(m.sizeBytes)],
        [
          'Preprocessing',
          `mean [${p.mean.join(', ')}], std [${p.std.join(', ')}], ${p.layout}${p.outputIsProbability ? ', outputs probabilities' : ''}`,
        ],
        ['Uploaded', f.date(m.createdAt)],
      ]),
    ),
    section(
      'io',
      'Inputs and outputs',
      table({
        caption: 'Graph inputs and outputs',
        head: ['Kind', 'Name', 'Type', 'Shape'],
        rows: [
          ...m.inputs.map((t) => ['input', h('code', {}, t.name), t.type, f.shape(t.shape)]),
          ...m.outputs.map((t) => ['output', h('code', {}, t.name), t.type, f.shape(t.shape)]),
        ],
      }),
    ),
    section(
      'layers',
      `Layers (${m.layers.length}, in graph order)`,
      table({
        caption: 'Layers a run can measure (nv.layers), in graph order',
        head: ['#', 'Name', 'Op', 'Shape'],
        numeric: [0],
        rows: m.layers.map((l, i) => [String(i + 1), h('code', {}, l.name), l.opType, f.shape(l.shape)]),
      }),
    ),
  );
}

/** @param {import('./app.js').PageContext} ctx @param {URLSearchParams} q */
export async function datasetsPage(ctx, q) {
  ctx.title('Datasets');
  const cursor = q.get('cursor');
  const page = await api(`/v1/datasets?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
  replace(
    ctx.main,
    h('h1', { tabindex: '-1' }, 'Datasets'),
    page.items.length === 0
      ? notice('No datasets yet: upload one with POST /v1/datasets (see the README).')
      : table({
          cards: true,
          caption: 'Datasets, newest first',
          head: ['Name', 'Format', 'Images', 'Size (H \u00d7 W \u00d7 C)', 'Classes', 'Stored', 'Uploaded'],
          numeric: [2, 4, 5],
          rows: page.items.map((d) => [
            h('a', { href: `#/datasets/${d.id}` }, d.name),
            d.format,
            d.count.toLocaleString(),
            `${d.height} \u00d7 ${d.width} \u00d7 ${d.channels} (${d.dtype})`,
            String(d.classes.length),
            f.bytes(d.sizeBytes),
            f.date(d.createdAt),
          ]),
        }),
    pager('#/datasets', page.nextCursor, cursor),
  );
}

/** @param {import('./app.js').PageContext} ctx @param {string} id */
export async function datasetPage(ctx, id) {
  const d = await cached(`/v1/datasets/${id}`);
  ctx.title(d.name);
  const thumbs = h('ul', { class: 'thumbs' });
  replace(
    ctx.main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/datasets' }, 'Datasets'), ' / ', d.name),
    h('h1', { tabindex: '-1' }, d.name),
    h('p', {}, h('a', { href: `#/runs?dataset=${d.id}`, class: 'button' }, 'Runs on this dataset')),
    section(
      'metadata',
      'Metadata',
      dl([
        ['Id', h('code', {}, d.id)],
        ['Format', d.format],
        ['Images', d.count.toLocaleString()],
        [
          'Image size',
          `${d.height} \u00d7 ${d.width} px, ${d.channels} channel${d.channels > 1 ? 's' : ''} (${d.dtype})`,
        ],
        ['Stored', f.bytes(d.sizeBytes)],
        ['sha256', h('code', { class: 'wrap' }, d.sha256)],
        ['Uploaded', f.date(d.createdAt)],
      ]),
    ),
    section('thumbnails', `First ${Math.min(THUMBNAILS, d.count)} images`, thumbs),
    section(
      'classes',
      `Classes (${d.classes.length})`,
      h(
        'div',
        { class: 'charts' },
        barChart({
          name: 'class-counts',
          title: 'Images per class',
          xTitle: 'images',
          categories: d.classes.map((c) => `${c.index}: ${c.name}`),
          series: [{ name: 'images', values: d.classes.map((c) => c.count) }],
          format: (v) => String(Math.round(v)),
        }),
      ),
    ),
  );
  const names = d.classes.map((c) => c.name);
  for (let i = 0; i < Math.min(THUMBNAILS, d.count); i++) {
    const img = /** @type {HTMLImageElement} */ (h('img', { alt: `Image ${i}`, width: 84, height: 84 }));
    const cap = h('figcaption', {}, `#${i}`);
    thumbs.append(h('li', {}, h('figure', { class: 'thumb' }, img, cap)));
    imageWithLabel(`/v1/datasets/${id}/images/${i}`)
      .then(({ url, label }) => {
        img.src = url;
        const name = label === null ? '?' : (names[label] ?? String(label));
        img.alt = `Image ${i}: ${name}`;
        replace(cap, `#${i} `, h('strong', {}, name));
      })
      .catch(() => {
        cap.textContent = `#${i} (could not load)`;
      });
  }
}
