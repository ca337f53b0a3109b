// invariance models push|list
import type { Model } from '../api/types.js';
import { formatBytes, pushModel } from '../api/upload.js';
import { parseCommand, parseJsonObject, parseList } from '../args.js';
import { UsageError } from '../errors.js';
import { renderModel } from '../report/text.js';
import { catalogCommand, LIST_OPTIONS, PUSH_OPTIONS } from './catalog.js';

const PUSH = {
  ...PUSH_OPTIONS,
  name: { type: 'string' },
  version: { type: 'string' },
  tags: { type: 'string' },
  preprocessing: { type: 'string' },
} as const;

const LIST = {
  ...LIST_OPTIONS,
  name: { type: 'string' },
  tag: { type: 'string' },
} as const;

export const modelsCommand = catalogCommand({
  noun: 'models',
  push: {
    parse: (argv: string[]) => parseCommand('models push', argv, PUSH, true),
    prepare({ values, positionals }) {
      if (positionals.length !== 1)
        throw new UsageError('models push takes one file: models push <file.onnx>', 'models');
      if (values.preprocessing) parseJsonObject(values.preprocessing, '--preprocessing');
      const tags = values.tags !== undefined ? parseList(values.tags).join(',') : undefined;
      const fields = {
        name: values.name,
        version: values.version,
        tags,
        preprocessing: values.preprocessing,
      };
      return (client, log) => pushModel(client, positionals[0], fields, log);
    },
    render: renderModel,
  },
  list: {
    parse: (argv: string[]) => parseCommand('models list', argv, LIST, true),
    path: '/v1/models',
    query: (values) => ({ name: values.name, tag: values.tag }),
    columns: ['id', 'name', 'version', 'tags', 'size', 'layers', 'created'],
    row: (m: Model) => [
      m.id,
      m.name,
      m.version ?? '-',
      m.tags.join(',') || '-',
      formatBytes(m.sizeBytes),
      String(m.layers.length),
      m.createdAt,
    ],
  },
});
