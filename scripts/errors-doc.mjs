// Regenerates docs/errors.md from src/core/errors.ts (run after `npm run build`).
// test/errors.test.ts fails when the two disagree.
import { writeFileSync } from 'node:fs';
import { ERRORS } from '../dist/src/core/errors.js';

const rows = Object.entries(ERRORS).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.summary} |`);
writeFileSync('docs/errors.md', `# Error codes

Every error from the API is \`{"error": {"code", "message", "details"}}\` with the
HTTP status below; the CLI prints \`strata: <message> (<code>)\` on one line and
exits non-zero. Codes are stable: new ones are added, old ones never change
meaning. The table is generated from \`src/core/errors.ts\` by \`node scripts/errors-doc.mjs\`
and a test keeps the two in sync.

| code | HTTP | meaning |
|---|---|---|
${rows.join('\n')}
`);
