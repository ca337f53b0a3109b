// The bootstrap admin key: INVARIANCE_ADMIN_KEY if set; otherwise the first start generates
// one, writes it to DATA_DIR/admin.key (mode 0600) and says so once. Later starts reuse it.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type ApiKeyRepository, generateKey } from './apiKeys.js';

export async function ensureAdminKey(
  keys: ApiKeyRepository,
  opts: { dataDir: string; fromEnv: string | null },
): Promise<{ key: string; generated: boolean; file: string | null }> {
  if (opts.fromEnv) {
    await keys.ensure('bootstrap-admin', opts.fromEnv, ['admin']);
    return { key: opts.fromEnv, generated: false, file: null };
  }
  const file = path.join(opts.dataDir, 'admin.key');
  let key: string;
  let generated = false;
  if (existsSync(file)) {
    key = (await readFile(file, 'utf8')).trim();
  } else {
    key = generateKey();
    generated = true;
    await mkdir(opts.dataDir, { recursive: true });
    await writeFile(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  }
  await keys.ensure('bootstrap-admin', key, ['admin']);
  return { key, generated, file };
}
