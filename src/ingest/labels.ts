// Label bookkeeping shared by every format: range checks, per-class counts, and the class list.
import { IngestError, invalid } from './errors.js';

export const MAX_LABEL = 65535;

export interface ClassInfo {
  index: number;
  name: string;
  count: number;
}

/** The INVALID_DATASET error for a label outside [0, 65535], showing the value as read. */
export function labelOutOfRange(label: number | bigint, where: string): IngestError {
  return invalid(`${where}: label ${label} is not an integer in [0, ${MAX_LABEL}]`);
}

export class LabelCounter {
  readonly counts = new Float64Array(MAX_LABEL + 1);
  maxLabel = -1;
  total = 0;

  /** Records one label; throws INVALID_DATASET when it is not an integer in [0, 65535]. */
  add(label: number, where: string): void {
    if (!Number.isInteger(label) || label < 0 || label > MAX_LABEL) throw labelOutOfRange(label, where);
    this.counts[label]++;
    if (label > this.maxLabel) this.maxLabel = label;
    this.total++;
  }
}

/**
 * The class list: one entry per class index 0..K-1 with its sample count. K is the length of
 * `classNames` when given (every label must be below it), else the length of `defaultNames`
 * when given (archive folder names), else max label + 1 with the indices as names.
 */
export function buildClasses(
  counter: LabelCounter,
  classNames: readonly string[] | undefined,
  defaultNames?: readonly string[],
): ClassInfo[] {
  const names = classNames ?? defaultNames;
  if (names && counter.maxLabel >= names.length) {
    throw new IngestError(
      'INVALID_DATASET',
      `label ${counter.maxLabel} is out of range for ${names.length} class names` +
        (classNames ? ' (classNames)' : ''),
    );
  }
  const k = names ? names.length : counter.maxLabel + 1;
  const classes: ClassInfo[] = [];
  for (let i = 0; i < k; i++) {
    classes.push({ index: i, name: names ? names[i] : String(i), count: counter.counts[i] });
  }
  return classes;
}
