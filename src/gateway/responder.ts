/**
 * Who answers an exchange: an HTTP/1.1 connection or one HTTP/2 stream. The
 * upstream relay and static files write through either; `h2` tells them apart
 * where the wire formats differ (the relay hands an HTTP/2 stream the
 * backend's head as a header list instead of HTTP/1.1 bytes).
 */
import type { ClientConnection } from './connection.js';
import type { H2Stream } from './h2-stream.js';

export type Responder = ClientConnection | H2Stream;
