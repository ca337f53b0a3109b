// `invariance models|datasets push|list`: the two catalog commands have one shape. push checks its
// arguments, uploads (unless the service already has the bytes) and prints the stored item, as
// text or as JSON with `reused`; list walks the catalog's pages and prints a table or the JSON
// page. Each command brings only its own flags, its upload, and its table's columns.
import type { ApiClient, Query } from '../api/client.js';
import type { Pushed } from '../api/upload.js';
import { CONNECTION_OPTIONS, type Options, parsePositiveInt } from '../args.js';
import { UsageError } from '../errors.js';
import { textTable } from '../report/format.js';
import { connect, type Io, logger, printHelp, printJson } from './common.js';
import { listAll } from './list.js';

/** The flags of every push, besides the command's own. */
export const PUSH_OPTIONS = {
  ...CONNECTION_OPTIONS,
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
} as const satisfies Options;

/** The flags of every list, besides the command's own filters. */
export const LIST_OPTIONS = {
  ...CONNECTION_OPTIONS,
  limit: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies Options;

/** Items a list prints when --limit is not given. */
const DEFAULT_LIST_LIMIT = 50;
const MAX_LIST_LIMIT = 100_000;

/** The part of parseCommand's answer read here; each command's parse gives its own flags too. */
interface Parsed<Values> {
  values: Values;
  positionals: string[];
}
interface CommonValues {
  server?: string;
  'api-key'?: string;
  help?: boolean;
  json?: boolean;
}
type PushValues = CommonValues & { quiet?: boolean };
type ListValues = CommonValues & { limit?: string };

export type Upload<Item> = (client: ApiClient, log: (line: string) => void) => Promise<Pushed<Item>>;

export interface CatalogCommand<Item extends object, P extends PushValues, L extends ListValues> {
  /** The command's name, also its help topic. */
  noun: 'models' | 'datasets';
  push: {
    /** parseCommand with the command's options (PUSH_OPTIONS and its own). */
    parse(argv: string[]): Parsed<P>;
    /**
     * Checks the arguments and returns the upload. It runs before connecting, so a wrong argument
     * is reported as such even when the server or key is missing too.
     */
    prepare(parsed: Parsed<P>): Upload<Item>;
    /** The pushed item as text for a person. */
    render(item: Item, reused: boolean): string;
  };
  list: {
    /** parseCommand with the command's options (LIST_OPTIONS and its filters). */
    parse(argv: string[]): Parsed<L>;
    /** The list route, e.g. /v1/models. */
    path: string;
    /** The route's filters from the flags. */
    query(values: L): Query;
    columns: string[];
    row(item: Item): string[];
  };
}

/** The `<noun> push|list` command: its help, its two subcommands, and an unknown one refused. */
export function catalogCommand<Item extends object, P extends PushValues, L extends ListValues>(
  command: CatalogCommand<Item, P, L>,
): (argv: string[], io: Io) => Promise<number> {
  const { noun, push, list } = command;
  return async (argv, io) => {
    const [sub, ...rest] = argv;
    if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return printHelp(io, noun);
    if (sub === 'push') {
      const parsed = push.parse(rest);
      if (parsed.values.help) return printHelp(io, noun);
      const upload = push.prepare(parsed);
      const client = connect(parsed.values, io, noun);
      const pushed = await upload(client, logger(io, parsed.values.quiet));
      if (parsed.values.json) printJson(io, { ...pushed.item, reused: pushed.reused });
      else io.stdout.write(`${push.render(pushed.item, pushed.reused)}\n`);
      return 0;
    }
    if (sub === 'list') {
      const { values, positionals } = list.parse(rest);
      if (values.help) return printHelp(io, noun);
      if (positionals.length)
        throw new UsageError(`${noun} list takes no arguments (got ${positionals[0]})`, noun);
      const limit =
        values.limit !== undefined
          ? parsePositiveInt(values.limit, '--limit', MAX_LIST_LIMIT)
          : DEFAULT_LIST_LIMIT;
      const client = connect(values, io, noun);
      const page = await listAll<Item>(client, list.path, list.query(values), limit);
      if (values.json) printJson(io, page);
      else io.stdout.write(`${textTable(list.columns, page.items.map(list.row))}\n`);
      return 0;
    }
    throw new UsageError(`unknown command "${noun} ${sub}" (push, list)`, noun);
  };
}
