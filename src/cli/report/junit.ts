// JUnit XML for CI test reports: one testcase per gate. FAIL is a <failure>, ERROR an <error>,
// WARN passes with a note in <system-out>. Without gates, one testcase for the run itself; when
// the run failed, was canceled or timed out, every requested gate (or the run) is an <error>.
import os from 'node:os';
import type { Gate, GateResult } from '../api/types.js';
import { gateLabel, gateStatus } from './format.js';
import type { Report } from './outcome.js';

/** XML 1.0 text: escaped, and without the characters XML cannot hold at all. */
export function xmlEscape(s: string): string {
  return (
    s
      // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&apos;')
  );
}

interface Case {
  name: string;
  kind: 'pass' | 'failure' | 'error';
  message: string;
  body: string;
  out?: string;
}

function gateCase(g: GateResult): Case {
  const status = gateStatus(g);
  const details = [
    `metric: ${g.metric}`,
    `op: ${g.op}`,
    `threshold: ${g.value}`,
    `actual: ${g.actual ?? 'n/a'}`,
    ...(g.baseline !== undefined ? [`baseline: ${g.baseline ?? 'n/a'}`] : []),
    `status: ${status}`,
  ].join('\n');
  const name = gateLabel(g);
  if (status === 'FAIL')
    return { name, kind: 'failure', message: g.message, body: `${g.message}\n${details}` };
  if (status === 'ERROR')
    return { name, kind: 'error', message: g.message, body: `${g.message}\n${details}` };
  return {
    name,
    kind: 'pass',
    message: '',
    body: '',
    out: `${status === 'WARN' ? 'WARN: ' : ''}${g.message}\n${details}`,
  };
}

function cases(r: Report): Case[] {
  if (r.verdict) {
    if (r.verdict.gates.length > 0) return r.verdict.gates.map(gateCase);
    return [
      {
        name: `run ${r.run.id}`,
        kind: r.outcome.exitCode === 0 ? 'pass' : 'error',
        message: r.outcome.reason,
        body: r.outcome.reason,
        out: r.outcome.reason,
      },
    ];
  }
  const ok = r.outcome.exitCode === 0;
  if (r.gates.length > 0) {
    return r.gates.map((g: Gate) => ({
      name: gateLabel(g),
      kind: 'error',
      message: `not evaluated: ${r.outcome.reason}`,
      body: `not evaluated: ${r.outcome.reason}`,
    }));
  }
  return [
    {
      name: `run ${r.run.id}`,
      kind: ok ? 'pass' : 'error',
      message: r.outcome.reason,
      body: r.outcome.reason,
      out: ok ? r.outcome.reason : undefined,
    },
  ];
}

/** How long the run took: its own timing, else from its timestamps (a run canceled by --timeout has none). */
function runMs(run: Report['run'], now = Date.now()): number {
  const total = run.timings?.totalMs;
  if (typeof total === 'number' && Number.isFinite(total)) return total;
  const from = Date.parse(run.startedAt ?? run.createdAt);
  const to = run.finishedAt ? Date.parse(run.finishedAt) : now;
  return Number.isFinite(from) && Number.isFinite(to) ? Math.max(0, to - from) : 0;
}

export function renderJunit(r: Report): string {
  const all = cases(r);
  const failures = all.filter((c) => c.kind === 'failure').length;
  const errors = all.filter((c) => c.kind === 'error').length;
  const seconds = (runMs(r.run) / 1000).toFixed(3);
  const suite = `invariance ${r.run.name ?? r.model?.name ?? r.run.id}`;
  const classname = `invariance.${(r.model?.name ?? 'run').replace(/[^\w.-]+/g, '_')}`;
  const props: Array<[string, string]> = [
    ['runId', r.run.id],
    ['runStatus', r.run.status],
    ['outcome', r.outcome.status],
    ['modelId', r.run.modelId],
    ['datasetId', r.run.datasetId],
    ...(r.model ? ([['model', r.model.name]] as Array<[string, string]>) : []),
    ...(r.dataset ? ([['dataset', r.dataset.name]] as Array<[string, string]>) : []),
  ];
  const a = (s: string) => xmlEscape(s);
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="invariance" tests="${all.length}" failures="${failures}" errors="${errors}" skipped="0" time="${seconds}">`,
    `  <testsuite name="${a(suite)}" tests="${all.length}" failures="${failures}" errors="${errors}" skipped="0" time="${seconds}" timestamp="${a(r.run.createdAt)}" hostname="${a(os.hostname())}">`,
    '    <properties>',
    ...props.map(([k, v]) => `      <property name="${a(k)}" value="${a(v)}"/>`),
    '    </properties>',
  ];
  for (const c of all) {
    lines.push(`    <testcase name="${a(c.name)}" classname="${a(classname)}" time="0">`);
    if (c.kind !== 'pass') {
      const tag = c.kind;
      const type = tag === 'failure' ? 'FAIL' : 'ERROR';
      lines.push(`      <${tag} message="${a(c.message)}" type="${type}">${a(c.body)}</${tag}>`);
    }
    if (c.out) lines.push(`      <system-out>${a(c.out)}</system-out>`);
    lines.push('    </testcase>');
  }
  lines.push('  </testsuite>', '</testsuites>', '');
  return lines.join('\n');
}
