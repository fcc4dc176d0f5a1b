/**
 * The gateway's own answers: neutral error pages (they name no tenant, no site
 * and no software version, so an unknown name reveals nothing about who is
 * hosted here) and the cached Date header.
 */
import { STATUS_CODES } from 'node:http';

const pageCache = new Map<number, Buffer>();

/** The header lines every error page is sent with (HTTP/1.1 syntax; the HTTP/2 stream converts them). */
export const ERROR_PAGE_HEADERS = 'Content-Type: text/html\r\nCache-Control: no-store\r\n';

/** A small HTML page for `status`, built once per status. */
export function errorPage(status: number): Buffer {
  let page = pageCache.get(status);
  if (page === undefined) {
    const title = `${status} ${reason(status)}`;
    page = Buffer.from(`<!doctype html>\n<html><head><title>${title}</title></head><body><h1>${title}</h1></body></html>\n`, 'latin1');
    pageCache.set(status, page);
  }
  return page;
}

export function reason(status: number): string {
  return STATUS_CODES[status] ?? 'Unknown';
}

let dateValue = new Date().toUTCString();
let dateSecond = Math.floor(Date.now() / 1000);

/** The IMF-fixdate for now, formatted at most once a second. */
export function httpDate(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(second * 1000).toUTCString();
  }
  return dateValue;
}
