// The provider API as the console calls it: the session token in sessionStorage, JSON
// in and out, and the API's errors turned into readable messages.

const TOKEN = 'ferry.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN, t);
  else sessionStorage.removeItem(TOKEN);
}

export async function call(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'unreachable', 'The provider cannot be reached. Check your connection and try again.');
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    const err = data && data.error ? data.error : {};
    if (response.status === 401 && path !== '/v1/login') setToken(null);
    throw new ApiError(response.status, err.code || 'error', readable(response.status, err.message));
  }
  return data;
}

function readable(status, message) {
  if (message) return message.charAt(0).toUpperCase() + message.slice(1);
  if (status === 401) return 'Your session has ended. Log in again.';
  if (status === 404) return 'Not found.';
  return `The provider answered ${status}.`;
}
