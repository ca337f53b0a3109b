// A small multipart/form-data encoder for app.inject tests: parts are written in the given
// order (so tests control whether fields come before or after files).
import { randomBytes } from 'node:crypto';

export interface MultipartPart {
  name: string;
  /** Present for file parts. */
  filename?: string;
  /** Defaults to application/octet-stream for files; none for plain fields. */
  contentType?: string;
  data: Buffer | string;
}

export function multipartBody(parts: MultipartPart[]): {
  payload: Buffer;
  headers: { 'content-type': string };
} {
  const boundary = `----invariance-test-${randomBytes(12).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"`;
    if (part.filename !== undefined) head += `; filename="${part.filename}"`;
    head += '\r\n';
    const type = part.contentType ?? (part.filename !== undefined ? 'application/octet-stream' : undefined);
    if (type) head += `Content-Type: ${type}\r\n`;
    head += '\r\n';
    chunks.push(
      Buffer.from(head, 'utf8'),
      Buffer.isBuffer(part.data) ? part.data : Buffer.from(part.data, 'utf8'),
    );
    chunks.push(Buffer.from('\r\n', 'utf8'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`, 'utf8'));
  return {
    payload: Buffer.concat(chunks),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  };
}
