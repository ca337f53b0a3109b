// A Markdown summary fit for a pull-request comment: headline verdict, the run's key numbers,
// the gates (✅/⚠️/❌), NV per layer, and the per-point curve folded in <details>.
import type { VerdictStatus } from '../api/types.js';
import { fmt, gateLabel, gateStatus, pointLabel } from './format.js';
import type { OutcomeStatus, Report } from './outcome.js';

const ICON: Record<OutcomeStatus | VerdictStatus, string> = {
  PASS: '✅',
  WARN: '⚠️',
  FAIL: '❌',
  ERROR: '❌',
  SUCCEEDED: '✅',
  RUN_FAILED: '❌',
  RUN_CANCELED: '❌',
  TIMEOUT: '❌',
  PENDING: '⏳',
};

/**
 * A table cell: no line breaks, pipes escaped, and outside `code spans` the characters HTML would
 * read (< > &) as entities, so that a gate named `<b>x</b>` shows as typed.
 */
export function cell(s: string): string {
  const text = s
    .replace(/\r?\n/g, ' ')
    .split('`')
    .map((part, i) =>
      i % 2 === 1 ? part : part.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'),
    )
    .join('`');
  return text.replace(/\|/g, '\\|');
}
const code = (s: string) => `\`${s.replace(/`/g, "'")}\``;

function table(headers: string[], rows: string[][], right: boolean[] = []): string[] {
  return [
    `| ${headers.map(cell).join(' | ')} |`,
    `|${headers.map((_, i) => (right[i] ? '---:' : '---')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ];
}

export function renderMarkdown(r: Report): string {
  const { run, results, verdict, outcome } = r;
  const out: string[] = [`### ${ICON[outcome.status]} Invariance: ${outcome.status.replace('_', ' ')}`, ''];
  if (outcome.exitCode !== 0 || outcome.status === 'SUCCEEDED') out.push(`${outcome.reason}`, '');

  const facts: string[][] = [];
  facts.push([
    '**Model**',
    r.model
      ? `${code(r.model.name)} · ${code(r.model.id)} · sha256 ${code(r.model.sha256.slice(0, 12))}`
      : code(run.modelId),
  ]);
  facts.push([
    '**Dataset**',
    r.dataset
      ? `${code(r.dataset.name)}${r.dataset.count !== undefined ? ` · ${r.dataset.count.toLocaleString('en-US')} images` : ''} · ${code(r.dataset.id)}`
      : code(run.datasetId),
  ]);
  const runBits = [code(run.id)];
  if (run.name) runBits.push(run.name);
  if (run.tags.length) runBits.push(`tags ${run.tags.map(code).join(' ')}`);
  facts.push(['**Run**', runBits.join(' · ')]);
  const statusBits: string[] = [run.status];
  if (run.summary)
    statusBits.push(`${run.summary.samples.toLocaleString('en-US')} samples × ${run.summary.points} points`);
  if (run.timings?.totalMs !== undefined) statusBits.push(`${(run.timings.totalMs / 1000).toFixed(1)} s`);
  if (run.error) statusBits.push(`${run.error.code}: ${run.error.message}`);
  facts.push(['**Status**', statusBits.join(' · ')]);
  if (results) {
    facts.push([
      '**Accuracy**',
      `clean ${fmt(results.clean.accuracy)} · mean ${fmt(results.accuracy.mean)} · min ${fmt(results.accuracy.min)} · worst case ${fmt(results.accuracy.worstCase)} · TTA ${fmt(results.tta.accuracy)}`,
    ]);
    facts.push([
      '**Consistency**',
      `mean ${fmt(results.consistency.mean)} · min ${fmt(results.consistency.min)}`,
    ]);
    if (results.ekld) facts.push(['**eKLD**', fmt(results.ekld.overall)]);
  }
  out.push(...table(['', ''], facts), '');

  if (verdict && verdict.gates.length > 0) {
    out.push('#### Gates', '');
    out.push(
      ...table(
        ['', 'Gate', 'Metric', 'Op', 'Threshold', 'Actual', 'Baseline', 'Message'],
        verdict.gates.map((g) => {
          const status = gateStatus(g);
          return [
            `${ICON[status]} ${status}`,
            gateLabel(g),
            code(g.metric),
            code(g.op),
            String(g.value),
            fmt(g.actual),
            g.baseline === undefined ? '' : fmt(g.baseline),
            g.message,
          ];
        }),
        [false, false, false, false, true, true, true, false],
      ),
      '',
    );
  } else if (r.gates.length > 0) {
    out.push('#### Gates (not evaluated)', '');
    out.push(
      ...table(
        ['', 'Gate'],
        r.gates.map((g) => ['❌ ERROR', `${gateLabel(g)}: not evaluated`]),
      ),
      '',
    );
  }

  if (results?.nv?.length) {
    out.push('#### NV per layer', '');
    out.push(
      ...table(
        ['Layer', 'Aggregation', 'NV', 'TV', 'SV'],
        results.nv.map((l) => [code(l.layer), l.aggregation, fmt(l.nv), fmt(l.tv), fmt(l.sv)]),
        [false, false, true, true, true],
      ),
      '',
    );
  }

  if (results && results.points.length > 0) {
    const withEkld = results.points.some((p) => p.ekld !== undefined);
    out.push(`<details><summary>Accuracy per point (${results.points.length})</summary>`, '');
    out.push(
      ...table(
        ['Point', 'Accuracy', 'Consistency', ...(withEkld ? ['eKLD'] : [])],
        results.points.map((p) => [
          pointLabel(p.params),
          fmt(p.accuracy),
          fmt(p.consistency),
          ...(withEkld ? [fmt(p.ekld)] : []),
        ]),
        [false, true, true, true],
      ),
      '',
      '</details>',
      '',
    );
  }
  if (r.charts?.length) {
    out.push('#### Charts', '');
    // Relative links: the SVGs are saved beside this file (CI uploads them together); the
    // service's URLs need an API key, so they are given as text, not as image sources.
    for (const c of r.charts) out.push(`![${c.name}](${encodeURI(c.file)})`, '');
    out.push(r.charts.map((c) => `${c.name}: ${code(c.url)}`).join(' · '), '');
  }
  return out.join('\n');
}
