// invariance models push|list
import type { Model } from '../api/types.js';
import { formatBytes, pushModel } from '../api/upload.js';
import { CONNECTION_OPTIONS, parseCommand, parseJsonObject, parseList, parsePositiveInt } from '../args.js';
import { UsageError } from '../errors.js';
import { textTable } from '../report/format.js';
import { renderModel } from '../report/text.js';
import { connect, type Io, logger, printHelp, printJson } from './common.js';
import { listAll } from './list.js';

const PUSH = {
  ...CONNECTION_OPTIONS,
  name: { type: 'string' },
  version: { type: 'string' },
  tags: { type: 'string' },
  preprocessing: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

const LIST = {
  ...CONNECTION_OPTIONS,
  name: { type: 'string' },
  tag: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export async function modelsCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return printHelp(io, 'models');
  if (sub === 'push') {
    const { values, positionals } = parseCommand('models push', rest, PUSH, true);
    if (values.help) return printHelp(io, 'models');
    if (positionals.length !== 1)
      throw new UsageError('models push takes one file: models push <file.onnx>', 'models');
    if (values.preprocessing) parseJsonObject(values.preprocessing, '--preprocessing');
    const client = connect(values, io, 'models');
    const tags = values.tags !== undefined ? parseList(values.tags).join(',') : undefined;
    const pushed = await pushModel(
      client,
      positionals[0],
      { name: values.name, version: values.version, tags, preprocessing: values.preprocessing },
      logger(io, values.quiet),
    );
    if (values.json) printJson(io, { ...pushed.item, reused: pushed.reused });
    else io.stdout.write(`${renderModel(pushed.item, pushed.reused)}\n`);
    return 0;
  }
  if (sub === 'list') {
    const { values, positionals } = parseCommand('models list', rest, LIST, true);
    if (values.help) return printHelp(io, 'models');
    if (positionals.length)
      throw new UsageError(`models list takes no arguments (got ${positionals[0]})`, 'models');
    const limit = values.limit !== undefined ? parsePositiveInt(values.limit, '--limit', 100_000) : 50;
    const client = connect(values, io, 'models');
    const page = await listAll<Model>(client, '/v1/models', { name: values.name, tag: values.tag }, limit);
    if (values.json) printJson(io, page);
    else {
      io.stdout.write(
        `${textTable(
          ['id', 'name', 'version', 'tags', 'size', 'layers', 'created'],
          page.items.map((m) => [
            m.id,
            m.name,
            m.version ?? '-',
            m.tags.join(',') || '-',
            formatBytes(m.sizeBytes),
            String(m.layers.length),
            m.createdAt,
          ]),
        )}\n`,
      );
    }
    return 0;
  }
  throw new UsageError(`unknown command "models ${sub}" (push, list)`, 'models');
}
