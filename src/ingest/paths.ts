// Archive entry names: safety (no escaping the archive's folder) and the junk that operating
// systems leave in folders. Entries are never written to disk by their names; the checks
// refuse archives that would be unsafe for any tool that did.
import { IngestError } from './errors.js';

/** Path segments of a safe relative entry name; throws ARCHIVE_PATH_UNSAFE otherwise. */
export function safeEntrySegments(name: string): string[] {
  const unsafe = (why: string) =>
    new IngestError('ARCHIVE_PATH_UNSAFE', `archive entry "${name}" ${why}`, name);
  if (name.length === 0) throw unsafe('has an empty name');
  if (name.includes('\0')) throw unsafe('contains a NUL character');
  const normalised = name.replaceAll('\\', '/');
  if (normalised.startsWith('/') || /^[A-Za-z]:/.test(normalised)) throw unsafe('is an absolute path');
  const segments = normalised.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw unsafe('escapes its folder ("..")');
  return segments;
}

const JUNK_NAMES = new Set(['thumbs.db', 'desktop.ini', 'ehthumbs.db', '.ds_store']);

/**
 * Files and folders skipped in image archives: macOS resource forks and metadata (`__MACOSX/`,
 * `._*`, `.DS_Store`), any other dot-file or dot-folder, and Windows' `Thumbs.db` / `desktop.ini`.
 */
export function isJunkPath(segments: readonly string[]): boolean {
  return segments.some((s) => s === '__MACOSX' || s.startsWith('.') || JUNK_NAMES.has(s.toLowerCase()));
}

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp'] as const;

export function hasImageExtension(fileName: string): boolean {
  const lower = fileName.toLowerCase();
  return IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/** Code-point order (UTF-8 byte order equals code-point order; JS `<` compares UTF-16 units). */
export function compareCodePoints(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
