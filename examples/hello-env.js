// A Workers-style handler for the env level: one V8 isolate, no Node APIs.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const visits = Number((await env.KV.get('visits')) ?? '0') + 1;
    await env.KV.put('visits', String(visits));
    return new Response(`hello from an isolate: ${url.pathname}, visit ${visits}\n`, {
      headers: { 'content-type': 'text/plain' },
    });
  },
};
