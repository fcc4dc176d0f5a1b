/**
 * Bad input, reported one way everywhere: `STRATA_ERR_VALIDATION` whose details
 * are `{ issues: [{ field, message }] }` — `field` a dotted path from the top of
 * what was sent (`body.name`, `config.restart`), the first issue also in the message.
 */
import type { z } from 'zod';
import { StrataError } from './errors.js';

export interface ValidationIssue {
  field: string;
  message: string;
}

/** At most this many issues are reported: enough to fix a request, never a wall of text. */
const MAX_ISSUES = 20;

/** One bad field. */
export function validationError(field: string, message: string): StrataError {
  return invalidIssues([{ field, message }]);
}

/** A zod failure, each issue's path prefixed with where the value came from (`body`, `config`, …). */
export function zodValidationError(err: z.ZodError, prefix: readonly string[] = []): StrataError {
  return invalidIssues(err.issues.slice(0, MAX_ISSUES).map((i) => ({
    field: [...prefix, ...i.path.map(String)].join('.') || '(root)',
    message: i.message,
  })));
}

function invalidIssues(issues: ValidationIssue[]): StrataError {
  const first = issues[0]!;
  return new StrataError('STRATA_ERR_VALIDATION', `${first.field}: ${first.message}`, { issues });
}
