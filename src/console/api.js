// The server API as the console calls it: same origin, session cookie, CSRF token on every POST.
let csrf = '';

/** An error answer of the server API, with its code and HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function setCsrf(token) {
  csrf = token ?? '';
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method === 'POST') {
    headers['Content-Type'] = 'application/json';
    headers['X-CSRF-Token'] = csrf;
  }
  const r = await fetch(`/v1/admin/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, j.error?.code ?? 'error', j.error?.message ?? `HTTP ${r.status}`);
  return j;
}

export const get = (path, params = {}) => {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== ''));
  return call('GET', q.size ? `${path}?${q}` : path);
};
export const post = (path, body) => call('POST', path, body ?? {});
