/**
 * Redirect sites. A target that is a bare origin (`https://new.example.com` or
 * with a trailing '/') keeps the request's path and query, like nginx's
 * `return 301 https://new.example.com$request_uri`; a target with a path is
 * used as it is.
 */

export function redirectLocation(to: string, requestTarget: string): string {
  const schemeEnd = to.indexOf('://');
  const pathStart = to.indexOf('/', schemeEnd + 3);
  const isOrigin = pathStart === -1 || pathStart === to.length - 1;
  if (!isOrigin) return to;
  const origin = pathStart === -1 ? to : to.slice(0, pathStart);
  return requestTarget === '*' ? `${origin}/` : origin + requestTarget;
}
