// invariance datasets push|list
import type { Dataset } from '../api/types.js';
import { type DatasetSource, pushDataset } from '../api/upload.js';
import { parseClassNames, parseCommand } from '../args.js';
import { UsageError } from '../errors.js';
import { renderDataset } from '../report/text.js';
import { catalogCommand, LIST_OPTIONS, PUSH_OPTIONS } from './catalog.js';

const PUSH = {
  ...PUSH_OPTIONS,
  images: { type: 'string' },
  labels: { type: 'string' },
  name: { type: 'string' },
  'class-names': { type: 'string' },
} as const;

const LIST = {
  ...LIST_OPTIONS,
  name: { type: 'string' },
} as const;

export const datasetsCommand = catalogCommand({
  noun: 'datasets',
  push: {
    parse: (argv: string[]) => parseCommand('datasets push', argv, PUSH, true),
    prepare({ values, positionals }) {
      let source: DatasetSource;
      if (values.images !== undefined || values.labels !== undefined) {
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
      const fields = { name: values.name, classNames };
      return (client, log) => pushDataset(client, source, fields, log);
    },
    render: renderDataset,
  },
  list: {
    parse: (argv: string[]) => parseCommand('datasets list', argv, LIST, true),
    path: '/v1/datasets',
    query: (values) => ({ name: values.name }),
    columns: ['id', 'name', 'format', 'images', 'size', 'classes', 'created'],
    row: (d: Dataset) => [
      d.id,
      d.name,
      d.format,
      String(d.count),
      `${d.width}x${d.height}x${d.channels}`,
      String(d.classes.length),
      d.createdAt,
    ],
  },
});
