// The JSON body parser: Fastify's own (secure-json-parse, prototype poisoning refused), with an
// empty body read as no body (clients send `content-type: application/json` on body-less POSTs
// such as cancel) and refusals that say what is wrong instead of "Body is not valid JSON".
import type { FastifyInstance } from 'fastify';
import { AppError } from './problem.js';

export function installJsonBodyParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    parse(req, text, (err, value) => {
      if (!err) {
        done(null, value);
        return;
      }
      let detail: string;
      try {
        JSON.parse(text);
        detail = 'the body has a "__proto__" or "constructor.prototype" key, which is refused';
      } catch (syntax) {
        detail = `the body is not valid JSON: ${syntax instanceof Error ? syntax.message : String(syntax)}`;
      }
      done(new AppError(400, 'INVALID_JSON', detail), undefined);
    });
  });
}
