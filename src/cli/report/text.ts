// The human-readable report on stdout: the run, the points table (accuracy, consistency, eKLD),
// the aggregates, NV per layer, and the verdict.
import type { Dataset, Model, Run, RunResults, Verdict } from '../api/types.js';
import { fmt, gateLabel, gateStatus, pointLabel, textTable } from './format.js';
import type { Report } from './outcome.js';

/** Terminal output shows at most this many points; --json, --markdown have them all. */
export const MAX_TEXT_POINTS = 200;

export function renderRunHeader(run: Run, r?: Pick<Report, 'model' | 'dataset'>): string {
  const lines = [
    `run ${run.id}  ${run.status}${run.name ? `  "${run.name}"` : ''}${run.tags.length ? `  tags: ${run.tags.join(', ')}` : ''}`,
  ];
  const m = r?.model;
  const d = r?.dataset;
  lines.push(
    `  model    ${m ? `${m.name}  ${m.id}${m.reused === undefined ? '' : m.reused ? '  (reused)' : '  (uploaded)'}` : run.modelId}`,
  );
  lines.push(
    `  dataset  ${d ? `${d.name}  ${d.id}${d.count !== undefined ? `  ${d.count} images` : ''}${d.reused === undefined ? '' : d.reused ? '  (reused)' : '  (uploaded)'}` : run.datasetId}`,
  );
  const facts: string[] = [];
  if (run.summary) facts.push(`${run.summary.samples} samples x ${run.summary.points} points`);
  else facts.push(`${run.progress.done}/${run.progress.total} inferences`);
  if (run.timings?.totalMs !== undefined) facts.push(`${(run.timings.totalMs / 1000).toFixed(1)} s`);
  lines.push(`  ${facts.join(', ')}`);
  if (run.error) lines.push(`  error    ${run.error.code}: ${run.error.message}`);
  return lines.join('\n');
}

export function renderResults(results: RunResults): string {
  const out: string[] = [];
  const withEkld = results.points.some((p) => p.ekld !== undefined);
  const shown = results.points.slice(0, MAX_TEXT_POINTS);
  const rows = [
    ['clean', fmt(results.clean.accuracy), '-', ...(withEkld ? ['-'] : [])],
    ...shown.map((p) => [
      pointLabel(p.params),
      fmt(p.accuracy),
      fmt(p.consistency),
      ...(withEkld ? [fmt(p.ekld)] : []),
    ]),
  ];
  out.push(
    textTable(['point', 'accuracy', 'consistency', ...(withEkld ? ['eKLD'] : [])], rows, [
      false,
      true,
      true,
      true,
    ]),
  );
  if (results.points.length > shown.length) {
    out.push(`... ${results.points.length - shown.length} more points (--json or --markdown list them all)`);
  }
  out.push('');
  out.push(
    `accuracy     clean ${fmt(results.clean.accuracy)}  mean ${fmt(results.accuracy.mean)}  min ${fmt(results.accuracy.min)}  max ${fmt(results.accuracy.max)}  worst case ${fmt(results.accuracy.worstCase)}  TTA ${fmt(results.tta.accuracy)}`,
  );
  out.push(`consistency  mean ${fmt(results.consistency.mean)}  min ${fmt(results.consistency.min)}`);
  if (results.ekld) {
    out.push(
      `eKLD         overall ${fmt(results.ekld.overall)}${results.ekld.infinitePairs ? `  (${results.ekld.infinitePairs} infinite pairs)` : ''}`,
    );
  }
  if (results.nv?.length) {
    out.push('');
    out.push(
      textTable(
        ['layer', 'aggregation', 'NV', 'TV', 'SV', 'finite/total'],
        results.nv.map((l) => [
          l.layer,
          l.aggregation,
          fmt(l.nv),
          fmt(l.tv),
          fmt(l.sv),
          `${l.finite}/${l.total}`,
        ]),
        [false, false, true, true, true, true],
      ),
    );
  }
  return out.join('\n');
}

export function renderVerdict(verdict: Verdict): string {
  const lines = [`verdict ${verdict.status}`];
  if (verdict.gates.length === 0) lines.push('  (no gates)');
  const rows = verdict.gates.map((g) => [gateStatus(g), gateLabel(g), g.message]);
  if (rows.length) lines.push(textTable(['', 'gate', 'message'], rows).replace(/^/gm, '  '));
  return lines.join('\n');
}

export function renderReport(r: Report): string {
  const parts = [renderRunHeader(r.run, r)];
  if (r.results) parts.push(renderResults(r.results));
  if (r.verdict) parts.push(renderVerdict(r.verdict));
  else if (r.gates.length) parts.push(`verdict: none (${r.gates.length} gates not evaluated)`);
  parts.push(`${r.outcome.status}: ${r.outcome.reason}`);
  return `${parts.join('\n\n')}\n`;
}

export function renderModel(m: Model, reused?: boolean): string {
  return [
    `model ${m.id}${reused === undefined ? '' : reused ? '  (already there: reused)' : '  (created)'}`,
    `  name     ${m.name}${m.version ? ` ${m.version}` : ''}`,
    `  sha256   ${m.sha256}`,
    `  size     ${m.sizeBytes} bytes`,
    `  tags     ${m.tags.join(', ') || '-'}`,
    `  layers   ${m.layers.map((l) => l.name).join(', ')}`,
  ].join('\n');
}

export function renderDataset(d: Dataset, reused?: boolean): string {
  return [
    `dataset ${d.id}${reused === undefined ? '' : reused ? '  (already there: reused)' : '  (created)'}`,
    `  name     ${d.name}`,
    `  sha256   ${d.sha256}`,
    `  format   ${d.format}, ${d.count} images ${d.width}x${d.height}x${d.channels}`,
    `  classes  ${d.classes.map((c) => c.name).join(', ')}`,
  ].join('\n');
}
