// Log in and sign up.

import { call, setToken } from '../api.js';
import { field, h } from '../dom.js';
import { flash, go } from '../app.js';

function nextOf(params) {
  const next = params.get('next');
  return next && next.startsWith('#/') ? next : '#/gateways';
}

export function loginView(params) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = await call('POST', '/v1/login', { email: email.value, password: password.value });
        setToken(r.token);
        flash('');
        go(nextOf(params));
      } catch (err) {
        flash(err.message);
        password.focus();
      }
    },
  }, field('Email', email), field('Password', password), h('button', { type: 'submit' }, 'Log in'));
  return h('div', {}, h('h1', {}, 'Log in'), form,
    h('p', {}, 'No account yet? ', h('a', { href: `#/signup?next=${encodeURIComponent(nextOf(params))}` }, 'Sign up')));
}

export function signupView(params) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', {
    type: 'password', name: 'password', autocomplete: 'new-password', required: true, minlength: 10,
    'aria-describedby': 'password-hint',
  });
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await call('POST', '/v1/signup', { email: email.value, password: password.value });
        const r = await call('POST', '/v1/login', { email: email.value, password: password.value });
        setToken(r.token);
        flash('Your account is ready.', 'info');
        go(nextOf(params));
      } catch (err) {
        flash(err.message);
      }
    },
  }, field('Email', email), field('Password', password),
  h('p', { id: 'password-hint', class: 'muted' }, 'At least 10 characters.'),
  h('button', { type: 'submit' }, 'Sign up'));
  return h('div', {}, h('h1', {}, 'Sign up'), form,
    h('p', {}, 'Have an account? ', h('a', { href: `#/login?next=${encodeURIComponent(nextOf(params))}` }, 'Log in')));
}
