import { describe, expect, it } from 'vitest';
import { ClassificationAccumulator } from '../../src/domain/classification.js';
import {
  evaluateGates,
  formatGateExpression,
  formatMetricPath,
  formatNumber,
  type Gate,
  type GateContext,
  GateError,
  gateContextFromResults,
  gatesNeedBaseline,
  MAX_GATES,
  type MetricRef,
  metricValue,
  overallStatus,
  parseGateExpression,
  parseMetricPath,
  type RunResults,
  validateGate,
  validateGates,
  validateMetricPath,
} from '../../src/domain/gates.js';

function gateError(fn: () => unknown): GateError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GateError);
    const e = err as GateError;
    expect(e.code).toBe('INVALID_GATE');
    expect(e.statusCode).toBe(422);
    return e;
  }
  throw new Error('expected a GateError');
}

const CLASSES = ['T-shirt/top', 'Trouser', 'Shirt (men)', 'Ankle boot'];

const CTX: GateContext = {
  points: [
    { rotate: 0 },
    { rotate: 90 },
    { rotate: 15, scale: 1.2 },
    { translate: [2, -3] },
    { hflip: true },
  ],
  classNames: CLASSES,
  metrics: ['accuracy', 'ekld', 'nv'],
  nv: { layers: ['/Relu_output_0', 'logits', 'a,b'], aggregation: ['mean', 'none'] },
};

function nvEntry(layer: string, aggregation: 'mean' | 'none', nv: number | null, tv = 0.2, sv = 0.25) {
  return {
    layer,
    aggregation,
    dispersion: 'std',
    perClass: false,
    nv,
    tv,
    sv,
    finite: 16,
    infinite: 0,
    total: 16,
    samples: 1000,
  };
}

/** A run's results in the shape of `/results`. */
function results(over: Partial<RunResults> = {}): RunResults {
  return {
    samples: 1000,
    nonFiniteSamples: 0,
    clean: { accuracy: 0.9, perClassAccuracy: [0.95, 0.9, 0.85, 0.9] },
    points: [
      {
        params: { rotate: 0 },
        accuracy: 0.9,
        consistency: 1,
        ekld: 0,
        perClassAccuracy: [0.95, 0.9, 0.85, 0.9],
      },
      {
        params: { rotate: 90 },
        accuracy: 0.61,
        consistency: 0.5,
        ekld: 0.125,
        perClassAccuracy: [0.5, 0.75, 0.5, 0.69],
      },
      {
        params: { rotate: 15, scale: 1.2 },
        accuracy: 0.653,
        consistency: 0.75,
        ekld: 0.025,
        perClassAccuracy: [0.6, 0.7, 0.6, 0.712],
      },
    ],
    accuracy: { mean: 0.721, min: 0.61, max: 0.9, worstCase: 0.5 },
    consistency: { mean: 0.75, min: 0.5 },
    tta: { accuracy: 0.8 },
    ekld: {
      overall: 0.05,
      infinitePairs: 0,
      perClass: CLASSES.map((name, k) => ({
        class: k,
        name,
        count: 250,
        value: [0.04, 0.03, 0.08, 0.05][k],
        classSize: null,
      })),
    },
    nv: [
      nvEntry('/Relu_output_0', 'mean', 0.8612),
      nvEntry('/Relu_output_0', 'none', 0.9),
      nvEntry('logits', 'mean', 1.25),
    ],
    ...over,
  };
}

const CURRENT = results();
const BASELINE = results({
  accuracy: { mean: 0.752, min: 0.74, max: 0.91, worstCase: 0.6 },
  consistency: { mean: 0.7, min: 0.55 },
  ekld: { ...CURRENT.ekld!, overall: 0.04 },
  points: CURRENT.points.map((p) => (p.params.rotate === 90 ? { ...p, accuracy: 0.74 } : p)),
});

describe('parseMetricPath', () => {
  it('summary metrics', () => {
    for (const path of [
      'accuracy.clean',
      'accuracy.mean',
      'accuracy.min',
      'accuracy.max',
      'accuracy.worstCase',
      'consistency.mean',
      'consistency.min',
      'tta.accuracy',
      'ekld.overall',
    ]) {
      expect(parseMetricPath(path)).toEqual({ kind: 'summary', path });
    }
    expect(parseMetricPath('  accuracy . mean  ')).toEqual({ kind: 'summary', path: 'accuracy.mean' });
  });

  it('points: params in any order, spaces, numbers compared numerically', () => {
    expect(parseMetricPath('accuracy.at(rotate=90)')).toEqual({
      kind: 'point',
      metric: 'accuracy',
      params: { rotate: 90 },
    });
    expect(parseMetricPath('consistency.at( scale = 1.2 , rotate=15 )')).toEqual({
      kind: 'point',
      metric: 'consistency',
      params: { scale: 1.2, rotate: 15 },
    });
    expect(parseMetricPath('ekld.at(rotate=90.0)')).toEqual({
      kind: 'point',
      metric: 'ekld',
      params: { rotate: 90 },
    });
    expect(parseMetricPath('accuracy.at(rotate=-0)')).toEqual({
      kind: 'point',
      metric: 'accuracy',
      params: { rotate: 0 },
    });
    expect(parseMetricPath('accuracy.at(translate=[2, -3])')).toEqual({
      kind: 'point',
      metric: 'accuracy',
      params: { translate: [2, -3] },
    });
    expect(parseMetricPath('accuracy.at(hflip)')).toEqual({
      kind: 'point',
      metric: 'accuracy',
      params: { hflip: true },
    });
  });

  it('classes: bare index, bare or quoted names', () => {
    const cls = (c: number | string): MetricRef => ({ kind: 'class', metric: 'ekld', class: c });
    expect(parseMetricPath('ekld.class(3)')).toEqual(cls(3));
    expect(parseMetricPath('ekld.class( 0 )')).toEqual(cls(0));
    expect(parseMetricPath('ekld.class("3")')).toEqual(cls('3'));
    expect(parseMetricPath('ekld.class(T-shirt/top)')).toEqual(cls('T-shirt/top'));
    expect(parseMetricPath('ekld.class("T-shirt/top")')).toEqual(cls('T-shirt/top'));
    expect(parseMetricPath('ekld.class( Ankle boot )')).toEqual(cls('Ankle boot'));
    expect(parseMetricPath('ekld.class("Shirt (men)")')).toEqual(cls('Shirt (men)'));
    expect(parseMetricPath("ekld.class('Shirt (men)')")).toEqual(cls('Shirt (men)'));
    expect(parseMetricPath(`ekld.class('say "hi"')`)).toEqual(cls('say "hi"'));
    expect(parseMetricPath(String.raw`ekld.class("a\"b\\c")`)).toEqual(cls('a"b\\c'));
    expect(parseMetricPath("ekld.class(Men's shoes)")).toEqual(cls("Men's shoes"));
    expect(parseMetricPath('ekld.class(" padded ")')).toEqual(cls(' padded '));
  });

  it('layers: nv, tv, sv with an optional aggregation', () => {
    expect(parseMetricPath('nv.layer(/Relu_output_0)')).toEqual({
      kind: 'layer',
      metric: 'nv',
      layer: '/Relu_output_0',
      aggregation: null,
    });
    expect(parseMetricPath('nv.layer("/Relu_output_0", mean)')).toEqual({
      kind: 'layer',
      metric: 'nv',
      layer: '/Relu_output_0',
      aggregation: 'mean',
    });
    expect(parseMetricPath("tv.layer(logits,'none')")).toEqual({
      kind: 'layer',
      metric: 'tv',
      layer: 'logits',
      aggregation: 'none',
    });
    expect(parseMetricPath('sv.layer("a,b")')).toEqual({
      kind: 'layer',
      metric: 'sv',
      layer: 'a,b',
      aggregation: null,
    });
    expect(parseMetricPath('nv.layer(onnx::Gemm_8)')).toEqual({
      kind: 'layer',
      metric: 'nv',
      layer: 'onnx::Gemm_8',
      aggregation: null,
    });
  });

  it.each([
    ['', 'the metric is empty'],
    ['   ', 'the metric is empty'],
    ['foo.bar', "unknown metric 'foo' (known: accuracy, consistency, tta, ekld, nv, tv, sv)"],
    ['42', 'expected a metric such as accuracy.mean, got "42"'],
    [
      'accuracy',
      "'accuracy' needs a part after '.' (accuracy has: clean, mean, min, max, worstCase, at(<point>))",
    ],
    [
      'accuracy.median',
      "unknown metric 'accuracy.median' (accuracy has: clean, mean, min, max, worstCase, at(<point>))",
    ],
    ['accuracy.worstcase', "unknown metric 'accuracy.worstcase'"],
    ['consistency.max', "unknown metric 'consistency.max' (consistency has: mean, min, at(<point>))"],
    ['tta.at(rotate=90)', "unknown metric 'tta.at' (tta has: accuracy)"],
    ['nv.mean', "unknown metric 'nv.mean' (nv has: layer(<name>[,<aggregation>]))"],
    ['accuracy.mean(1)', 'accuracy.mean takes no arguments'],
    ['accuracy.mean x', 'unexpected "x" after accuracy.mean'],
    ['accuracy.at', 'accuracy.at needs a point, e.g. accuracy.at(rotate=90)'],
    ['accuracy.at()', "accuracy.at: give the point's params, e.g. accuracy.at(rotate=90)"],
    ['accuracy.at(rotate=90', "accuracy.at: missing ')'"],
    ['accuracy.at(rotate=90))', 'unexpected ")" after accuracy.at(rotate=90)'],
    ['accuracy.at(spin=90)', "accuracy.at: unknown parameter 'spin' in point key 'spin=90'"],
    ['accuracy.at(rotate=abc)', "accuracy.at: 'rotate': 'abc' is not a number"],
    ['accuracy.at(rotate=90,rotate=91)', "accuracy.at: parameter 'rotate' given twice"],
    ['accuracy.at("rotate=90")', `accuracy.at: unexpected '"' in the point`],
    ['ekld.class', 'ekld.class needs a class index or name, e.g. ekld.class(3)'],
    ['ekld.class()', 'ekld.class takes one class index or name, got 0 arguments'],
    ['ekld.class(1,2)', 'ekld.class takes one class index or name, got 2 arguments'],
    ['ekld.class(-1)', 'ekld.class: class index -1 is not an integer >= 0 (quote names: "-1")'],
    ['ekld.class(1.5)', 'ekld.class: class index 1.5 is not an integer >= 0'],
    ['ekld.class("abc)', 'ekld.class: unterminated quoted name (missing ")'],
    ['ekld.class(Shirt (men))', "ekld.class: unexpected '('; quote names that contain parentheses"],
    ['ekld.class("a" b)', 'ekld.class: unexpected "b)" after a quoted name'],
    ['ekld.class(a,)', 'ekld.class: empty argument'],
    ['nv.layer', 'nv.layer needs a layer name, e.g. nv.layer(/Relu_output_0)'],
    ['nv.layer()', 'nv.layer takes a layer name and optionally an aggregation, got 0 arguments'],
    ['nv.layer(,mean)', 'nv.layer: empty argument'],
    ['nv.layer(a,max)', "nv.layer: unknown aggregation 'max' (known: none, mean)"],
    ['nv.layer(a,mean,x)', 'got 3 arguments'],
    ['nv.layer(a', "nv.layer: missing ')'"],
  ])('rejects %j', (text, message) => {
    const err = gateError(() => parseMetricPath(text));
    expect(err.message).toContain(message);
    expect(err.message.startsWith(`metric ${JSON.stringify(text)}: `)).toBe(true);
  });

  it('formatMetricPath is canonical and reads back the same', () => {
    const cases: [string, string][] = [
      ['accuracy . worstCase', 'accuracy.worstCase'],
      ['accuracy.at( rotate = 90.0 )', 'accuracy.at(rotate=90)'],
      ['accuracy.at(scale=1.20, rotate=15)', 'accuracy.at(scale=1.2,rotate=15)'],
      ['accuracy.at(translate=[2, -3])', 'accuracy.at(translate=[2,-3])'],
      ['ekld.class( 3 )', 'ekld.class(3)'],
      ['ekld.class("3")', 'ekld.class("3")'],
      ['ekld.class("T-shirt/top")', 'ekld.class(T-shirt/top)'],
      ["ekld.class('Shirt (men)')", 'ekld.class("Shirt (men)")'],
      ['ekld.class(\'say "hi"\')', 'ekld.class(say "hi")'], // quotes inside a bare name are literal
      ['ekld.class(\'"quoted"\')', String.raw`ekld.class("\"quoted\"")`],
      ['ekld.class(" padded ")', 'ekld.class(" padded ")'],
      ['ekld.class(a\\b)', String.raw`ekld.class("a\\b")`],
      ['nv.layer( "/Relu_output_0" )', 'nv.layer(/Relu_output_0)'],
      ['nv.layer(/Relu_output_0, mean)', 'nv.layer(/Relu_output_0,mean)'],
      ['sv.layer("a,b",none)', 'sv.layer("a,b",none)'],
      ['nv.layer("7")', 'nv.layer(7)'],
    ];
    for (const [input, canonical] of cases) {
      const ref = parseMetricPath(input);
      expect(formatMetricPath(ref)).toBe(canonical);
      expect(parseMetricPath(canonical)).toEqual(ref);
    }
  });
});

describe('validateMetricPath against a run', () => {
  it('accepts metrics the run has; points match in any order and numerically', () => {
    expect(validateMetricPath('accuracy.at(scale=1.2,rotate=15.0)', CTX)).toEqual({
      kind: 'point',
      metric: 'accuracy',
      params: { scale: 1.2, rotate: 15 },
    });
    expect(validateMetricPath('ekld.at(hflip=true)', CTX).kind).toBe('point');
    expect(validateMetricPath('ekld.class(Ankle boot)', CTX).kind).toBe('class');
    expect(validateMetricPath('ekld.class(3)', CTX).kind).toBe('class');
    expect(validateMetricPath('nv.layer("a,b",none)', CTX).kind).toBe('layer');
  });

  it.each([
    [
      'accuracy.at(rotate=45)',
      'accuracy.at(rotate=45): the sweep has no point rotate=45; its points: rotate=0, rotate=90, rotate=15,scale=1.2, translate=[2,-3], hflip',
    ],
    ['accuracy.at(rotate=15)', 'the sweep has no point rotate=15;'],
    ['ekld.class(4)', 'ekld.class(4): class index 4 is out of range (the dataset has 4 classes)'],
    [
      'ekld.class(Sneaker)',
      'ekld.class(Sneaker): the dataset has no class named "Sneaker" (its classes: "T-shirt/top", "Trouser", "Shirt (men)", "Ankle boot")',
    ],
    ['ekld.class("0")', 'the dataset has no class named "0"'],
    [
      'nv.layer(/Relu_1_output_0)',
      'nv.layer(/Relu_1_output_0): the run computes NV for no layer "/Relu_1_output_0" (its layers: "/Relu_output_0", "logits", "a,b")',
    ],
  ])('rejects %s', (text, message) => {
    expect(gateError(() => validateMetricPath(text, CTX)).message).toContain(message);
  });

  it('rejects metrics the run does not compute', () => {
    const ctx: GateContext = { ...CTX, metrics: ['accuracy'], nv: { layers: [], aggregation: ['mean'] } };
    for (const [text, metric] of [
      ['ekld.overall', 'ekld'],
      ['ekld.at(rotate=90)', 'ekld'],
      ['ekld.class(1)', 'ekld'],
      ['nv.layer(logits)', 'nv'],
      ['sv.layer(logits)', 'nv'],
    ]) {
      expect(gateError(() => validateMetricPath(text, ctx)).message).toBe(
        `metric ${JSON.stringify(text)}: ${formatMetricPath(parseMetricPath(text))}: the run does not compute ${metric} (its metrics: accuracy)`,
      );
    }
    const onlyMean: GateContext = { ...CTX, nv: { layers: ['logits'], aggregation: ['mean'] } };
    expect(gateError(() => validateMetricPath('nv.layer(logits,none)', onlyMean)).message).toContain(
      "nv.layer(logits,none): the run does not aggregate with 'none' (its aggregations: mean)",
    );
  });

  it('ambiguous class names need the index', () => {
    const ctx: GateContext = { ...CTX, classNames: ['cat', 'cat', 'dog'] };
    expect(gateError(() => validateMetricPath('ekld.class(cat)', ctx)).message).toContain(
      '2 classes are named "cat"; use the index',
    );
  });

  it('lists at most 20 points', () => {
    const ctx: GateContext = { ...CTX, points: Array.from({ length: 25 }, (_, k) => ({ rotate: k })) };
    expect(gateError(() => validateMetricPath('accuracy.at(rotate=99)', ctx)).message).toContain(
      'rotate=18, rotate=19, ... (25 in all)',
    );
  });

  it('gateContextFromResults derives the context of a finished run', () => {
    expect(gateContextFromResults(CURRENT)).toEqual({
      points: [{ rotate: 0 }, { rotate: 90 }, { rotate: 15, scale: 1.2 }],
      classNames: CLASSES,
      metrics: ['accuracy', 'ekld', 'nv'],
      nv: { layers: ['/Relu_output_0', 'logits'], aggregation: ['mean', 'none'] },
    });
    const plain = results({ ekld: undefined, nv: undefined });
    expect(gateContextFromResults(plain)).toEqual({
      points: [{ rotate: 0 }, { rotate: 90 }, { rotate: 15, scale: 1.2 }],
      classNames: ['0', '1', '2', '3'],
      metrics: ['accuracy'],
      nv: { layers: [], aggregation: [] },
    });
    expect(gateContextFromResults(plain, ['a', 'b', 'c', 'd']).classNames).toEqual(['a', 'b', 'c', 'd']);
  });
});

describe('validateGates', () => {
  it('normalises gates: canonical metric, default name and severity, percentages', () => {
    expect(
      validateGates(
        [
          { metric: 'accuracy.at( rotate=90.0 )', op: '>=', value: 0.8 },
          { name: 'no big drop', metric: 'accuracy.mean', op: 'maxDrop', value: '2.0 %', severity: 'warn' },
          { metric: 'ekld.overall', op: 'maxIncrease', value: 0.01, severity: 'fail' },
          { metric: 'nv.layer("/Relu_output_0")', op: '<', value: -0 },
        ],
        CTX,
      ),
    ).toEqual([
      {
        name: 'accuracy.at(rotate=90) >= 0.8',
        metric: 'accuracy.at(rotate=90)',
        op: '>=',
        value: 0.8,
        severity: 'fail',
      },
      { name: 'no big drop', metric: 'accuracy.mean', op: 'maxDrop', value: '2%', severity: 'warn' },
      {
        name: 'ekld.overall maxIncrease 0.01',
        metric: 'ekld.overall',
        op: 'maxIncrease',
        value: 0.01,
        severity: 'fail',
      },
      {
        name: 'nv.layer(/Relu_output_0) < 0',
        metric: 'nv.layer(/Relu_output_0)',
        op: '<',
        value: 0,
        severity: 'fail',
      },
    ]);
    expect(
      Object.is(validateGates([{ metric: 'accuracy.mean', op: '<', value: -0 }])[0].value as number, 0),
    ).toBe(true);
  });

  it('no gates: an empty list', () => {
    expect(validateGates(undefined)).toEqual([]);
    expect(validateGates(null)).toEqual([]);
    expect(validateGates([])).toEqual([]);
  });

  it('without a context, only the syntax is checked', () => {
    expect(validateGates([{ metric: 'accuracy.at(rotate=45)', op: '>', value: 0.5 }])[0].metric).toBe(
      'accuracy.at(rotate=45)',
    );
  });

  it.each([
    [{}, 'gates: must be a list of gates, got object', 'gates', null],
    ['x', 'gates: must be a list of gates, got "x"', 'gates', null],
    [[42], 'gates[0]: a gate must be an object {metric, op, value, severity?, name?}, got 42', 'gates[0]', 0],
    [
      [null],
      'gates[0]: a gate must be an object {metric, op, value, severity?, name?}, got null',
      'gates[0]',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: '<', value: 1, threshold: 2 }],
      "gates[0]: unknown property 'threshold' (known: name, metric, op, value, severity)",
      'gates[0]',
      0,
    ],
    [
      [
        { metric: 'accuracy.mean', op: '<', value: 1 },
        { op: '<', value: 1 },
      ],
      'gates[1].metric: must be a metric path such as accuracy.mean, got undefined',
      'gates[1].metric',
      1,
    ],
    [
      [
        { metric: 'accuracy.mean', op: '<', value: 1 },
        { metric: 'accuracy.median', op: '<', value: 1 },
      ],
      "gates[1].metric: unknown metric 'accuracy.median' (accuracy has: clean, mean, min, max, worstCase, at(<point>))",
      'gates[1].metric',
      1,
    ],
    [
      [{ metric: 'accuracy.at(rotate=45)', op: '>=', value: 0.8 }],
      'gates[0].metric: accuracy.at(rotate=45): the sweep has no point rotate=45; its points: rotate=0, rotate=90, rotate=15,scale=1.2, translate=[2,-3], hflip',
      'gates[0].metric',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: '=', value: 1 }],
      'gates[0].op: must be one of <, <=, >, >=, maxDrop, maxIncrease, got "="',
      'gates[0].op',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: 'maxdrop', value: 1 }],
      'gates[0].op: must be one of <, <=, >, >=, maxDrop, maxIncrease, got "maxdrop"',
      'gates[0].op',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: '>=', value: '0.8' }],
      'gates[0].value: must be a finite number, got "0.8"',
      'gates[0].value',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: '>=', value: '80%' }],
      "gates[0].value: a percentage is only allowed with maxDrop and maxIncrease; '>=' needs a number",
      'gates[0].value',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: '>=' }],
      'gates[0].value: must be a finite number, got undefined',
      'gates[0].value',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: 'maxDrop', value: -0.01 }],
      'gates[0].value: must be a number >= 0 or a percentage like "2%", got -0.01',
      'gates[0].value',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: 'maxDrop', value: '-2%' }],
      'gates[0].value: must be a number >= 0 or a percentage like "2%", got "-2%"',
      'gates[0].value',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: 'maxDrop', value: 'two%' }],
      'gates[0].value: must be a number >= 0 or a percentage like "2%", got "two%"',
      'gates[0].value',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: 'maxIncrease', value: '0.02' }],
      'gates[0].value: must be a number >= 0 or a percentage like "2%", got "0.02"',
      'gates[0].value',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: 'maxIncrease', value: true }],
      'gates[0].value: must be a number >= 0 or a percentage like "2%", got boolean',
      'gates[0].value',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: '<', value: 1, severity: 'error' }],
      "gates[0].severity: must be 'fail' or 'warn', got \"error\"",
      'gates[0].severity',
      0,
    ],
    [
      [{ metric: 'accuracy.mean', op: '<', value: 1, name: ' ' }],
      'gates[0].name: must be a non-empty string of at most 200 characters',
      'gates[0].name',
      0,
    ],
    [
      [{ metric: 'a'.repeat(1001), op: '<', value: 1 }],
      'gates[0].metric: is longer than 1000 characters',
      'gates[0].metric',
      0,
    ],
  ])('rejects %j', (input, message, path, index) => {
    const err = gateError(() => validateGates(input, CTX));
    expect(err.message).toBe(message);
    expect(err.path).toBe(path);
    expect(err.index).toBe(index);
  });

  it('rejects NaN and Infinity thresholds', () => {
    expect(
      gateError(() => validateGate({ metric: 'accuracy.mean', op: '<', value: Number.NaN }, 3)).message,
    ).toBe('gates[3].value: must be a finite number, got NaN');
    expect(
      gateError(() =>
        validateGate({ metric: 'accuracy.mean', op: 'maxDrop', value: Number.POSITIVE_INFINITY }, 0),
      ).message,
    ).toBe('gates[0].value: must be a number >= 0 or a percentage like "2%", got Infinity');
  });

  it(`at most ${MAX_GATES} gates`, () => {
    const many = Array.from({ length: MAX_GATES + 1 }, () => ({
      metric: 'accuracy.mean',
      op: '<',
      value: 1,
    }));
    expect(gateError(() => validateGates(many)).message).toBe(
      `gates: at most ${MAX_GATES} gates, got ${MAX_GATES + 1}`,
    );
    expect(validateGates(many.slice(1))).toHaveLength(MAX_GATES);
  });

  it('gatesNeedBaseline', () => {
    expect(gatesNeedBaseline([{ op: '<' }, { op: '>=' }])).toBe(false);
    expect(gatesNeedBaseline([{ op: '<' }, { op: 'maxIncrease' }])).toBe(true);
    expect(gatesNeedBaseline([])).toBe(false);
  });
});

describe('parseGateExpression (the CLI form)', () => {
  it.each([
    [
      'ekld.overall<=0.1',
      { name: 'ekld.overall <= 0.1', metric: 'ekld.overall', op: '<=', value: 0.1, severity: 'fail' },
    ],
    [
      'accuracy.at(rotate=90)>=0.8',
      {
        name: 'accuracy.at(rotate=90) >= 0.8',
        metric: 'accuracy.at(rotate=90)',
        op: '>=',
        value: 0.8,
        severity: 'fail',
      },
    ],
    [
      'accuracy.mean maxDrop 2%',
      {
        name: 'accuracy.mean maxDrop 2%',
        metric: 'accuracy.mean',
        op: 'maxDrop',
        value: '2%',
        severity: 'fail',
      },
    ],
    [
      'warn:accuracy.mean maxDrop 2%',
      {
        name: 'accuracy.mean maxDrop 2%',
        metric: 'accuracy.mean',
        op: 'maxDrop',
        value: '2%',
        severity: 'warn',
      },
    ],
    [
      ' WARN : consistency.min > .5 ',
      { name: 'consistency.min > 0.5', metric: 'consistency.min', op: '>', value: 0.5, severity: 'warn' },
    ],
    [
      'fail:tta.accuracy<1e-1',
      { name: 'tta.accuracy < 0.1', metric: 'tta.accuracy', op: '<', value: 0.1, severity: 'fail' },
    ],
    [
      'ekld.overall maxincrease 0.02',
      {
        name: 'ekld.overall maxIncrease 0.02',
        metric: 'ekld.overall',
        op: 'maxIncrease',
        value: 0.02,
        severity: 'fail',
      },
    ],
    [
      'accuracy.at(scale=1.2, rotate=15) maxDrop 0.5 %',
      {
        name: 'accuracy.at(scale=1.2,rotate=15) maxDrop 0.5%',
        metric: 'accuracy.at(scale=1.2,rotate=15)',
        op: 'maxDrop',
        value: '0.5%',
        severity: 'fail',
      },
    ],
    [
      'nv.layer("/Relu_output_0", mean) < 0.9',
      {
        name: 'nv.layer(/Relu_output_0,mean) < 0.9',
        metric: 'nv.layer(/Relu_output_0,mean)',
        op: '<',
        value: 0.9,
        severity: 'fail',
      },
    ],
    [
      'ekld.class("Shirt (men)")<=0.2',
      {
        name: 'ekld.class("Shirt (men)") <= 0.2',
        metric: 'ekld.class("Shirt (men)")',
        op: '<=',
        value: 0.2,
        severity: 'fail',
      },
    ],
    [
      'nv.layer("a<b")>=-1',
      { name: 'nv.layer(a<b) >= -1', metric: 'nv.layer(a<b)', op: '>=', value: -1, severity: 'fail' },
    ],
  ])('%s', (text, gate) => {
    expect(parseGateExpression(text)).toEqual(gate);
  });

  it.each([
    ['', 'gate "": the gate expression is empty'],
    ['warn:', 'gate "warn:": the metric is empty'],
    [
      'accuracy.mean',
      'gate "accuracy.mean": missing an operator and a value after accuracy.mean (e.g. accuracy.mean>=0.8)',
    ],
    ['accuracy.mean >= ', `gate "accuracy.mean >= ": missing a value after '>='`],
    [
      'accuracy.mean == 0.8',
      'gate "accuracy.mean == 0.8": expected an operator (<, <=, >, >=, maxDrop, maxIncrease) after accuracy.mean, got "== 0.8"',
    ],
    [
      'accuracy.mean maxDropx 2%',
      'gate "accuracy.mean maxDropx 2%": expected an operator (<, <=, >, >=, maxDrop, maxIncrease) after accuracy.mean, got "maxDropx 2%"',
    ],
    ['accuracy.mean >= abc', 'gate "accuracy.mean >= abc": the value "abc" is not a number'],
    [
      'accuracy.mean maxDrop 2 pct',
      'gate "accuracy.mean maxDrop 2 pct": the value "2 pct" is not a number or a percentage like 2%',
    ],
    [
      'accuracy.mean >= 80%',
      'gate "accuracy.mean >= 80%": a percentage is only allowed with maxDrop and maxIncrease; \'>=\' needs a number',
    ],
    [
      'accuracy.mean maxDrop -1',
      'gate "accuracy.mean maxDrop -1": must be a number >= 0 or a percentage like "2%", got -1',
    ],
    ['accuracy.medain>=0.5', 'gate "accuracy.medain>=0.5": unknown metric \'accuracy.medain\''],
    ['info:accuracy.mean>=0.5', 'gate "info:accuracy.mean>=0.5": unknown metric \'info\''],
  ])('rejects %j', (text, message) => {
    expect(gateError(() => parseGateExpression(text)).message).toContain(message);
  });

  it('formatGateExpression reads back as the same gate', () => {
    for (const text of [
      'ekld.overall<=0.1',
      'warn:accuracy.mean maxDrop 2%',
      'accuracy.at(scale=1.2,rotate=15) >= 0.5',
      'ekld.class("Shirt (men)") maxIncrease 0.01',
      'warn: sv.layer("a,b",none) > 0',
    ]) {
      const gate = parseGateExpression(text);
      expect(parseGateExpression(formatGateExpression(gate, true))).toEqual(gate);
    }
    expect(
      formatGateExpression({ metric: 'accuracy.mean', op: 'maxDrop', value: '2%', severity: 'warn' }, true),
    ).toBe('warn:accuracy.mean maxDrop 2%');
  });
});

describe('formatNumber', () => {
  it.each([
    [0, '0'],
    [-0, '0'],
    [0.031, '0.031'],
    [0.752, '0.752'],
    [0.75234, '0.7523'],
    [0.031000000000000028, '0.031'],
    [3.84756, '3.848'],
    [-0.5, '-0.5'],
    [100, '100'],
    [1234.56, '1235'],
    [9999.6, '10000'],
    [12345.6, '12346'],
    [0.000123456, '0.0001235'],
    [0.0000015, '0.0000015'],
    [1.5e-7, '1.5e-7'],
    [2e15, '2e+15'],
    [Number.NaN, 'NaN'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
  ])('%s -> %s', (x, text) => {
    expect(formatNumber(x)).toBe(text);
  });
});

describe('metricValue', () => {
  it('reads every kind of metric from results', () => {
    expect(metricValue(CURRENT, 'accuracy.clean')).toBe(0.9);
    expect(metricValue(CURRENT, 'accuracy.mean')).toBe(0.721);
    expect(metricValue(CURRENT, 'accuracy.min')).toBe(0.61);
    expect(metricValue(CURRENT, 'accuracy.max')).toBe(0.9);
    expect(metricValue(CURRENT, 'accuracy.worstCase')).toBe(0.5);
    expect(metricValue(CURRENT, 'consistency.mean')).toBe(0.75);
    expect(metricValue(CURRENT, 'consistency.min')).toBe(0.5);
    expect(metricValue(CURRENT, 'tta.accuracy')).toBe(0.8);
    expect(metricValue(CURRENT, 'ekld.overall')).toBe(0.05);
    expect(metricValue(CURRENT, 'accuracy.at(rotate=90.0)')).toBe(0.61);
    expect(metricValue(CURRENT, 'accuracy.at(scale=1.2,rotate=15)')).toBe(0.653);
    expect(metricValue(CURRENT, 'consistency.at(rotate=15,scale=1.2)')).toBe(0.75);
    expect(metricValue(CURRENT, 'ekld.at(rotate=90)')).toBe(0.125);
    expect(metricValue(CURRENT, 'ekld.class(2)')).toBe(0.08);
    expect(metricValue(CURRENT, 'ekld.class("Shirt (men)")')).toBe(0.08);
    expect(metricValue(CURRENT, 'ekld.class(T-shirt/top)')).toBe(0.04);
    expect(metricValue(CURRENT, 'nv.layer(/Relu_output_0)')).toBe(0.8612); // first aggregation
    expect(metricValue(CURRENT, 'nv.layer(/Relu_output_0,none)')).toBe(0.9);
    expect(metricValue(CURRENT, 'tv.layer(logits)')).toBe(0.2);
    expect(metricValue(CURRENT, 'sv.layer(logits,mean)')).toBe(0.25);
  });

  it('null when absent or not finite', () => {
    expect(metricValue(CURRENT, 'accuracy.at(rotate=45)')).toBeNull();
    expect(metricValue(CURRENT, 'ekld.class(9)')).toBeNull();
    expect(metricValue(CURRENT, 'nv.layer(logits,none)')).toBeNull();
    expect(metricValue(results({ ekld: undefined }), 'ekld.overall')).toBeNull();
    expect(metricValue(results({ tta: { accuracy: Number.NaN } }), 'tta.accuracy')).toBeNull();
  });
});

describe('evaluateGates', () => {
  const gate = (g: Partial<Gate> & Pick<Gate, 'metric' | 'op' | 'value'>): Gate => g;

  it('no gates: no verdict', () => {
    expect(evaluateGates([], CURRENT, BASELINE)).toBeNull();
  });

  it('threshold gates: pass and fail messages, baseline noted when given', () => {
    const gates = [
      gate({ metric: 'accuracy.at(rotate=90)', op: '>=', value: 0.8 }),
      gate({ metric: 'ekld.overall', op: '<=', value: 0.1 }),
    ];
    expect(evaluateGates(gates, CURRENT, BASELINE)).toEqual({
      status: 'FAIL',
      gatesVersion: 1,
      gates: [
        {
          name: 'accuracy.at(rotate=90) >= 0.8',
          metric: 'accuracy.at(rotate=90)',
          op: '>=',
          value: 0.8,
          severity: 'fail',
          actual: 0.61,
          baseline: 0.74,
          passed: false,
          status: 'FAIL',
          message: 'accuracy.at(rotate=90) = 0.61 < 0.80 (baseline 0.74)',
        },
        {
          name: 'ekld.overall <= 0.1',
          metric: 'ekld.overall',
          op: '<=',
          value: 0.1,
          severity: 'fail',
          actual: 0.05,
          baseline: 0.04,
          passed: true,
          status: 'PASS',
          message: 'ekld.overall = 0.05 <= 0.10 (baseline 0.04)',
        },
      ],
    });
    // Without a baseline: no baseline field, no note.
    const v = evaluateGates(gates, CURRENT, null);
    expect(v?.gates[1]).toEqual({
      name: 'ekld.overall <= 0.1',
      metric: 'ekld.overall',
      op: '<=',
      value: 0.1,
      severity: 'fail',
      actual: 0.05,
      passed: true,
      status: 'PASS',
      message: 'ekld.overall = 0.05 <= 0.10',
    });
    expect(v?.gates[0].message).toBe('accuracy.at(rotate=90) = 0.61 < 0.80');
    expect(v?.gates[0]).not.toHaveProperty('baseline');
  });

  it.each([
    ['<', 0.1, true, 'ekld.overall = 0.05 < 0.10'],
    ['<', 0.05, false, 'ekld.overall = 0.05 >= 0.05'],
    ['<=', 0.05, true, 'ekld.overall = 0.05 <= 0.05'],
    ['<=', 0.04, false, 'ekld.overall = 0.05 > 0.04'],
    ['>', 0.04, true, 'ekld.overall = 0.05 > 0.04'],
    ['>', 0.05, false, 'ekld.overall = 0.05 <= 0.05'],
    ['>=', 0.05, true, 'ekld.overall = 0.05 >= 0.05'],
    ['>=', 0.0625, false, 'ekld.overall = 0.0500 < 0.0625'],
  ] as const)('op %s %s', (op, value, passed, message) => {
    const v = evaluateGates([{ metric: 'ekld.overall', op, value }], CURRENT, null);
    expect(v?.status).toBe(passed ? 'PASS' : 'FAIL');
    expect(v?.gates[0].passed).toBe(passed);
    expect(v?.gates[0].message).toBe(message);
  });

  it('values within a relative 1e-9 count as equal', () => {
    const r = results({ accuracy: { mean: 0.1 + 0.2, min: 0.1, max: 0.5, worstCase: 0 } }); // 0.30000000000000004
    const check = (op: Gate['op']) =>
      evaluateGates([{ metric: 'accuracy.mean', op, value: 0.3 }], r, null)?.gates[0];
    expect(check('<=')?.passed).toBe(true);
    expect(check('>=')?.passed).toBe(true);
    expect(check('>')?.passed).toBe(false);
    expect(check('<')?.passed).toBe(false);
    expect(check('<=')?.message).toBe('accuracy.mean = 0.3 <= 0.3');
    expect(check('>')?.message).toBe('accuracy.mean = 0.3 <= 0.3');
  });

  it('maxDrop with an absolute and a relative allowance', () => {
    const v = evaluateGates(
      [
        { metric: 'accuracy.mean', op: 'maxDrop', value: '2%' },
        { metric: 'accuracy.mean', op: 'maxDrop', value: 0.02 },
        { metric: 'accuracy.mean', op: 'maxDrop', value: '5%' },
        { metric: 'accuracy.mean', op: 'maxDrop', value: 0.04 },
      ],
      CURRENT,
      BASELINE,
    );
    expect(v?.status).toBe('FAIL');
    expect(v?.gates[0]).toEqual({
      name: 'accuracy.mean maxDrop 2%',
      metric: 'accuracy.mean',
      op: 'maxDrop',
      value: '2%',
      severity: 'fail',
      actual: 0.721,
      baseline: 0.752,
      delta: 0.721 - 0.752,
      allowed: 0.02 * 0.752,
      passed: false,
      status: 'FAIL',
      message: 'accuracy.mean dropped 0.031 (4.1%) from baseline 0.752, more than the allowed 2%',
    });
    expect(v?.gates.map((g) => [g.passed, g.allowed, g.message])).toEqual([
      [
        false,
        0.02 * 0.752,
        'accuracy.mean dropped 0.031 (4.1%) from baseline 0.752, more than the allowed 2%',
      ],
      [false, 0.02, 'accuracy.mean dropped 0.031 (4.1%) from baseline 0.752, more than the allowed 0.02'],
      [true, 0.05 * 0.752, 'accuracy.mean dropped 0.031 (4.1%) from baseline 0.752, within the allowed 5%'],
      [true, 0.04, 'accuracy.mean dropped 0.031 (4.1%) from baseline 0.752, within the allowed 0.04'],
    ]);
  });

  it('maxDrop when the metric rose or did not move', () => {
    const v = evaluateGates(
      [
        { metric: 'consistency.mean', op: 'maxDrop', value: '2%' },
        { metric: 'tta.accuracy', op: 'maxDrop', value: 0 },
      ],
      CURRENT,
      BASELINE,
    );
    expect(v?.status).toBe('PASS');
    expect(v?.gates.map((g) => g.message)).toEqual([
      'consistency.mean increased 0.05 (7.1%) from baseline 0.7 (allowed drop: 2%)',
      'tta.accuracy is unchanged from baseline 0.8 (allowed drop: 0)',
    ]);
    expect(v?.gates[1].delta).toBe(0);
    // Float noise reads as unchanged.
    const noisy = evaluateGates(
      [{ metric: 'accuracy.mean', op: 'maxDrop', value: 0 }],
      results({ accuracy: { mean: 0.1 + 0.2, min: 0, max: 1, worstCase: 0 } }),
      results({ accuracy: { mean: 0.3, min: 0, max: 1, worstCase: 0 } }),
    );
    expect(noisy?.gates[0]).toMatchObject({
      passed: true,
      delta: 0.1 + 0.2 - 0.3,
      message: 'accuracy.mean is unchanged from baseline 0.3 (allowed drop: 0)',
    });
  });

  it('maxIncrease', () => {
    const v = evaluateGates(
      [
        { metric: 'ekld.overall', op: 'maxIncrease', value: '10%' },
        { metric: 'ekld.overall', op: 'maxIncrease', value: 0.02 },
        { metric: 'accuracy.mean', op: 'maxIncrease', value: 0 },
      ],
      CURRENT,
      BASELINE,
    );
    expect(v?.gates.map((g) => [g.status, g.message])).toEqual([
      ['FAIL', 'ekld.overall increased 0.01 (25%) from baseline 0.04, more than the allowed 10%'],
      ['PASS', 'ekld.overall increased 0.01 (25%) from baseline 0.04, within the allowed 0.02'],
      ['PASS', 'accuracy.mean dropped 0.031 (4.1%) from baseline 0.752 (allowed increase: 0)'],
    ]);
    expect(v?.gates[0].allowed).toBeCloseTo(0.004, 15);
    expect(v?.status).toBe('FAIL');
  });

  it('a drop of exactly the allowance passes despite float noise', () => {
    const cur = results({ accuracy: { mean: 0.735, min: 0.5, max: 0.9, worstCase: 0.5 } });
    const base = results({ accuracy: { mean: 0.75, min: 0.5, max: 0.9, worstCase: 0.5 } });
    expect(0.75 - 0.735).toBeGreaterThan(0.015); // 0.015000000000000013
    const v = evaluateGates(
      [
        { metric: 'accuracy.mean', op: 'maxDrop', value: '2%' },
        { metric: 'accuracy.mean', op: 'maxDrop', value: 0.015 },
      ],
      cur,
      base,
    );
    expect(v?.gates.map((g) => [g.passed, g.message])).toEqual([
      [true, 'accuracy.mean dropped 0.015 (2%) from baseline 0.75, within the allowed 2%'],
      [true, 'accuracy.mean dropped 0.015 (2%) from baseline 0.75, within the allowed 0.015'],
    ]);
  });

  it('relative allowance of a zero baseline: no percentage, nothing allowed', () => {
    const cur = results({ accuracy: { mean: 0.7, min: 0.5, max: 0.9, worstCase: 0.25 } });
    const base = results({ accuracy: { mean: 0.7, min: 0.5, max: 0.9, worstCase: 0 } });
    const v = evaluateGates(
      [
        { metric: 'accuracy.worstCase', op: 'maxIncrease', value: '50%' },
        { metric: 'accuracy.worstCase', op: 'maxDrop', value: '50%' },
      ],
      cur,
      base,
    );
    expect(v?.gates.map((g) => [g.status, g.allowed, g.message])).toEqual([
      ['FAIL', 0, 'accuracy.worstCase increased 0.25 from baseline 0, more than the allowed 50%'],
      ['PASS', 0, 'accuracy.worstCase increased 0.25 from baseline 0 (allowed drop: 50%)'],
    ]);
  });

  it('severities and the overall status', () => {
    const failing = { metric: 'accuracy.mean', op: '>=', value: 0.9 } as const;
    const passing = { metric: 'accuracy.mean', op: '<=', value: 0.9 } as const;
    const erroring = { metric: 'accuracy.mean', op: 'maxDrop', value: '1%' } as const;
    const run = (gates: Gate[]) => evaluateGates(gates, CURRENT, null);
    expect(run([passing])?.status).toBe('PASS');
    const warned = run([passing, { ...failing, severity: 'warn' }]);
    expect(warned?.status).toBe('WARN');
    expect(warned?.gates[1]).toMatchObject({ passed: false, status: 'WARN', severity: 'warn' });
    expect(run([{ ...passing, severity: 'warn' }])?.gates[0]).toMatchObject({ passed: true, status: 'PASS' });
    expect(run([{ ...failing, severity: 'warn' }, failing])?.status).toBe('FAIL');
    expect(run([failing, { ...erroring, severity: 'warn' }])?.status).toBe('ERROR');
    expect(overallStatus([])).toBe('PASS');
    expect(overallStatus([{ status: 'WARN' }, { status: 'ERROR' }, { status: 'FAIL' }])).toBe('ERROR');
  });

  it('a baseline op without a baseline is ERROR with the reason', () => {
    const gates: Gate[] = [{ metric: 'accuracy.mean', op: 'maxDrop', value: '2%', severity: 'warn' }];
    expect(evaluateGates(gates, CURRENT, null)).toEqual({
      status: 'ERROR',
      gatesVersion: 1,
      gates: [
        {
          name: 'accuracy.mean maxDrop 2%',
          metric: 'accuracy.mean',
          op: 'maxDrop',
          value: '2%',
          severity: 'warn',
          actual: 0.721,
          baseline: null,
          delta: null,
          allowed: null,
          passed: false,
          status: 'ERROR',
          message: 'accuracy.mean maxDrop 2% needs a baseline: no baseline run was given',
        },
      ],
    });
    const v = evaluateGates([{ metric: 'accuracy.mean', op: 'maxDrop', value: 0.01 }], CURRENT, null, {
      baselineMissingReason: 'no succeeded run of model "prod" tagged "production" on this dataset and sweep',
    });
    expect(v?.gates[0]).toMatchObject({ allowed: 0.01, status: 'ERROR' });
    expect(v?.gates[0].message).toBe(
      'accuracy.mean maxDrop 0.01 needs a baseline: no succeeded run of model "prod" tagged "production" on this dataset and sweep',
    );
  });

  it('a baseline lacking the metric is ERROR', () => {
    const base = results({ ekld: undefined, nv: [] });
    const v = evaluateGates(
      [
        { metric: 'ekld.overall', op: 'maxIncrease', value: '10%' },
        { metric: 'nv.layer(logits)', op: 'maxIncrease', value: 0.1 },
        { metric: 'ekld.overall', op: '<=', value: 0.1 },
      ],
      CURRENT,
      base,
    );
    expect(v?.gates.map((g) => [g.status, g.baseline, g.message])).toEqual([
      ['ERROR', null, 'ekld.overall is not available in the baseline run (it did not compute ekld)'],
      ['ERROR', null, 'nv.layer(logits) is not available in the baseline run (no NV of layer "logits")'],
      // A threshold gate does not need the baseline: it passes, with no baseline note.
      ['PASS', null, 'ekld.overall = 0.05 <= 0.10'],
    ]);
    expect(v?.status).toBe('ERROR');
  });

  it('a null (non-finite) metric is ERROR, not a pass', () => {
    const nan = results({
      nonFiniteSamples: 3,
      accuracy: { mean: null, min: null, max: null, worstCase: 0.5 },
      ekld: { ...CURRENT.ekld!, overall: null },
    });
    const v = evaluateGates(
      [
        { metric: 'accuracy.mean', op: '>=', value: 0 },
        { metric: 'ekld.overall', op: 'maxIncrease', value: '5%' },
        { metric: 'accuracy.worstCase', op: '>=', value: 0.5 },
      ],
      nan,
      BASELINE,
    );
    expect(v?.status).toBe('ERROR');
    expect(v?.gates[0]).toEqual({
      name: 'accuracy.mean >= 0',
      metric: 'accuracy.mean',
      op: '>=',
      value: 0,
      severity: 'fail',
      actual: null,
      baseline: 0.752,
      passed: false,
      status: 'ERROR',
      message: 'accuracy.mean is null in this run (3 of 1000 samples gave non-finite outputs)',
    });
    expect(v?.gates[1]).toMatchObject({
      actual: null,
      baseline: 0.04,
      status: 'ERROR',
      message: 'ekld.overall is null in this run (3 of 1000 samples gave non-finite outputs)',
    });
    expect(v?.gates[2]).toMatchObject({ status: 'PASS' });
    // NaN in memory reads as null too; both sides missing: both reasons.
    const v2 = evaluateGates(
      [{ metric: 'tta.accuracy', op: 'maxDrop', value: 0 }],
      results({ tta: { accuracy: Number.NaN } }),
      null,
    );
    expect(v2?.gates[0].message).toBe(
      'tta.accuracy is null in this run (undefined or not finite); tta.accuracy maxDrop 0 needs a baseline: no baseline run was given',
    );
  });

  it('metrics absent from the run are ERROR', () => {
    const plain = results({ ekld: undefined, nv: undefined });
    const v = evaluateGates(
      [
        { metric: 'ekld.overall', op: '<=', value: 0.1 },
        { metric: 'accuracy.at(rotate=45)', op: '>=', value: 0.5 },
        { metric: 'ekld.class(Trouser)', op: '<=', value: 0.1 },
        { metric: 'nv.layer(/Relu_output_0,none)', op: '<', value: 1 },
        { metric: 'ekld.at(rotate=90)', op: '<=', value: 1 },
      ],
      plain,
      null,
    );
    expect(v?.gates.map((g) => g.message)).toEqual([
      'ekld.overall is not available in this run (it did not compute ekld)',
      'accuracy.at(rotate=45) is not available in this run (its sweep has no point rotate=45)',
      'ekld.class(Trouser) is not available in this run (it did not compute ekld)',
      'nv.layer(/Relu_output_0,none) is not available in this run (no NV of layer "/Relu_output_0" with aggregation none)',
      'ekld.at(rotate=90) is not available in this run (it did not compute ekld)',
    ]);
    expect(v?.gates.every((g) => g.status === 'ERROR' && g.actual === null && !g.passed)).toBe(true);
    expect(
      evaluateGates([{ metric: 'ekld.class(Sneaker)', op: '<', value: 1 }], CURRENT, null)?.gates[0].message,
    ).toBe('ekld.class(Sneaker) is not available in this run (it has no class "Sneaker")');
  });

  it('points, classes and layers resolve as at submission', () => {
    const v = evaluateGates(
      [
        { metric: 'accuracy.at(scale=1.2, rotate=15.0)', op: '>', value: 0.65, name: 'rot+scale' },
        { metric: 'ekld.class(2)', op: '<', value: 0.1 },
        { metric: 'ekld.class("Shirt (men)")', op: '<', value: 0.1 },
        { metric: 'nv.layer("/Relu_output_0")', op: '<', value: 0.9 },
        { metric: 'nv.layer(/Relu_output_0, none)', op: '<', value: 0.9 },
        { metric: 'ekld.at(rotate=90)', op: '<=', value: 0.125 },
      ],
      CURRENT,
      null,
    );
    expect(v?.gates.map((g) => [g.name, g.metric, g.actual, g.status, g.message])).toEqual([
      [
        'rot+scale',
        'accuracy.at(scale=1.2,rotate=15)',
        0.653,
        'PASS',
        'accuracy.at(scale=1.2,rotate=15) = 0.653 > 0.650',
      ],
      ['ekld.class(2) < 0.1', 'ekld.class(2)', 0.08, 'PASS', 'ekld.class(2) = 0.08 < 0.10'],
      [
        'ekld.class("Shirt (men)") < 0.1',
        'ekld.class("Shirt (men)")',
        0.08,
        'PASS',
        'ekld.class("Shirt (men)") = 0.08 < 0.10',
      ],
      [
        'nv.layer(/Relu_output_0) < 0.9',
        'nv.layer(/Relu_output_0)',
        0.8612,
        'PASS',
        'nv.layer(/Relu_output_0) = 0.8612 < 0.9000',
      ],
      [
        'nv.layer(/Relu_output_0,none) < 0.9',
        'nv.layer(/Relu_output_0,none)',
        0.9,
        'FAIL',
        'nv.layer(/Relu_output_0,none) = 0.9 >= 0.9',
      ],
      [
        'ekld.at(rotate=90) <= 0.125',
        'ekld.at(rotate=90)',
        0.125,
        'PASS',
        'ekld.at(rotate=90) = 0.125 <= 0.125',
      ],
    ]);
  });

  it('an invalid gate is ERROR, the others are still evaluated', () => {
    const v = evaluateGates(
      [
        { metric: 'accuracy.median', op: '>=', value: 0.5 },
        { metric: 'accuracy.mean', op: '>=', value: 0.5 },
      ],
      CURRENT,
      null,
    );
    expect(v?.status).toBe('ERROR');
    expect(v?.gates[0]).toEqual({
      name: 'accuracy.median',
      metric: 'accuracy.median',
      op: '>=',
      value: 0.5,
      severity: 'fail',
      actual: null,
      passed: false,
      status: 'ERROR',
      message:
        "gates[0].metric: unknown metric 'accuracy.median' (accuracy has: clean, mean, min, max, worstCase, at(<point>))",
    });
    expect(v?.gates[1].status).toBe('PASS');
  });

  it('large and tiny values are formatted readably', () => {
    const r = results({ nv: [nvEntry('big', 'mean', 12345.678), nvEntry('tiny', 'mean', 0.00001234)] });
    const v = evaluateGates(
      [
        { metric: 'nv.layer(big)', op: '<', value: 100 },
        { metric: 'nv.layer(tiny)', op: '<', value: 0.001 },
      ],
      r,
      null,
    );
    expect(v?.gates.map((g) => g.message)).toEqual([
      'nv.layer(big) = 12346 >= 100',
      'nv.layer(tiny) = 0.00001234 < 0.001',
    ]);
  });
});

describe('with real accumulator output', () => {
  it('the results of ClassificationAccumulator.finalize are RunResults', () => {
    const acc = new ClassificationAccumulator({ points: 2, classes: 2 });
    // label 0: clean right, rotate=0 right, rotate=90 wrong
    acc.addSample(0, [2, 0], [2, 0, 0, 2]);
    // label 1: clean right, both points right
    acc.addSample(1, [0, 2], [0, 2, 0, 2]);
    const c = acc.finalize({ params: [{ rotate: 0 }, { rotate: 90 }], classNames: ['cat', 'dog'] });
    const r: RunResults = { ...c, nv: [] };
    const v = evaluateGates(
      [
        { metric: 'accuracy.at(rotate=90)', op: '>=', value: 0.8 },
        { metric: 'accuracy.clean', op: '>=', value: 1 },
        { metric: 'ekld.class(dog)', op: '<=', value: 0 },
      ],
      r,
      null,
    );
    expect(v?.gates.map((g) => [g.status, g.message])).toEqual([
      ['FAIL', 'accuracy.at(rotate=90) = 0.5 < 0.8'],
      ['PASS', 'accuracy.clean = 1 >= 1'],
      ['PASS', 'ekld.class(dog) = 0 <= 0'],
    ]);
    expect(gateContextFromResults(r).classNames).toEqual(['cat', 'dog']);
  });
});
