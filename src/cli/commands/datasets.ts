// invariance datasets push|list
import type { Dataset } from '../api/types.js';
import { type DatasetSource, pushDataset } from '../api/upload.js';
import { CONNECTION_OPTIONS, parseClassNames, parseCommand, parsePositiveInt } from '../args.js';
import { UsageError } from '../errors.js';
import { textTable } from '../report/format.js';
import { renderDataset } from '../report/text.js';
import { connect, type Io, logger, printHelp, printJson } from './common.js';
import { listAll } from './list.js';

const PUSH = {
  ...CONNECTION_OPTIONS,
  images: { type: 'string' },
  labels: { type: 'string' },
  name: { type: 'string' },
  'class-names': { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

const LIST = {
  ...CONNECTION_OPTIONS,
  name: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export async function datasetsCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help')
    return printHelp(io, 'datasets');
  if (sub === 'push') {
    const { values, positionals } = parseCommand('datasets push', rest, PUSH, true);
    if (values.help) return printHelp(io, 'datasets');
    const idx = values.images !== undefined || values.labels !== undefined;
    let source: DatasetSource;
    if (idx) {
      if (!values.images || !values.labels)
        throw new UsageError('--images and --labels go together', 'datasets');
      if (positionals.length)
        throw new UsageError('give either --images/--labels or a file, not both', 'datasets');
      source = { images: values.images, labels: values.labels };
    } else {
      if (positionals.length !== 1) {
        throw new UsageError('datasets push takes --images and --labels, or one archive file', 'datasets');
      }
      source = { file: positionals[0] };
    }
    const classNames =
      values['class-names'] !== undefined ? parseClassNames(values['class-names']) : undefined;
    const client = connect(values, io, 'datasets');
    const pushed = await pushDataset(
      client,
      source,
      { name: values.name, classNames },
      logger(io, values.quiet),
    );
    if (values.json) printJson(io, { ...pushed.item, reused: pushed.reused });
    else io.stdout.write(`${renderDataset(pushed.item, pushed.reused)}\n`);
    return 0;
  }
  if (sub === 'list') {
    const { values, positionals } = parseCommand('datasets list', rest, LIST, true);
    if (values.help) return printHelp(io, 'datasets');
    if (positionals.length)
      throw new UsageError(`datasets list takes no arguments (got ${positionals[0]})`, 'datasets');
    const limit = values.limit !== undefined ? parsePositiveInt(values.limit, '--limit', 100_000) : 50;
    const client = connect(values, io, 'datasets');
    const page = await listAll<Dataset>(client, '/v1/datasets', { name: values.name }, limit);
    if (values.json) printJson(io, page);
    else {
      io.stdout.write(
        `${textTable(
          ['id', 'name', 'format', 'images', 'size', 'classes', 'created'],
          page.items.map((d) => [
            d.id,
            d.name,
            d.format,
            String(d.count),
            `${d.width}x${d.height}x${d.channels}`,
            String(d.classes.length),
            d.createdAt,
          ]),
        )}\n`,
      );
    }
    return 0;
  }
  throw new UsageError(`unknown command "datasets ${sub}" (push, list)`, 'datasets');
}
