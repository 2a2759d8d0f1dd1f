// The console: a hash router over views, the session, and messages for the customer.

import { call, setToken, token } from './api.js';
import { loginView, signupView } from './views/auth.js';
import { activateView, gatewaysView } from './views/gateways.js';
import { gatewayView } from './views/gateway.js';
import { tokensView } from './views/tokens.js';

const main = document.getElementById('main');
const flashBox = document.getElementById('flash');
let timers = [];
let routeNumber = 0;  // the page being shown; an older route's view is dropped

// A message above the page: errors from the API read as sentences.
export function flash(text, kind = 'error') {
  flashBox.className = kind;
  flashBox.textContent = text || '';
}

// Runs fn every ms while el is on the page (a view dropped before it was shown, or
// left since, stops it).
export function every(ms, fn, el) {
  let seen = false;
  let idle = 0;
  const t = setInterval(() => {
    if (el.isConnected) {
      seen = true;
      fn();
    } else if (seen || ++idle > 10) {
      clearInterval(t);
    }
  }, ms);
  timers.push(t);
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function decoded(part) {
  try {
    return decodeURIComponent(part);
  } catch (e) {
    return part;
  }
}

async function showNav() {
  const nav = document.getElementById('nav');
  nav.hidden = !token();
  if (token()) {
    try {
      const me = await call('GET', '/v1/me');
      document.getElementById('who').textContent = me.account.email;
    } catch (e) {
      nav.hidden = true;
    }
  }
}

async function route() {
  timers.forEach(clearInterval);
  timers = [];
  routeNumber += 1;
  const mine = routeNumber;
  const hash = location.hash || '#/gateways';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  const open = parts[0] === 'login' || parts[0] === 'signup';
  if (!open && !token()) {
    const back = encodeURIComponent(hash);
    location.hash = `#/login?next=${back}`;
    return;
  }
  await showNav();
  let view;
  if (parts[0] === 'login') view = loginView(params);
  else if (parts[0] === 'signup') view = signupView(params);
  else if (parts[0] === 'activate') view = activateView(params);
  else if (parts[0] === 'tokens') view = tokensView();
  else if (parts[0] === 'gateways' && parts[1]) view = gatewayView(decoded(parts[1]));
  else view = gatewaysView();
  const shown = await view;
  if (mine !== routeNumber) return;  // the customer went elsewhere meanwhile
  main.replaceChildren(shown);
  main.focus();
}

// The skip link moves the focus; it must not change the route.
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

document.getElementById('logout').addEventListener('click', async () => {
  try {
    await call('POST', '/v1/logout');
  } catch (e) {
    // the session is forgotten here either way
  }
  setToken(null);
  flash('You are logged out.', 'info');
  go('#/login');
});

// The agent's ?activationRegion= redirect lands here with ?activationKey=…: keep it
// for the activation form, after logging in if need be.
const landing = new URLSearchParams(location.search);
if (landing.get('activationKey')) {
  const key = landing.get('activationKey');
  history.replaceState(null, '', location.pathname);
  location.hash = `#/activate?key=${encodeURIComponent(key)}`;
}

window.addEventListener('hashchange', () => {
  flash('');
  route();
});
route();
