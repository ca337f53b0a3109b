#!/usr/bin/env node
// The `invariance` CLI (issue 4). Until it lands, say so instead of failing obscurely.
process.stderr.write('invariance: the CLI is not implemented yet (see issue 4)\n');
process.exit(2);
