// Real OpenID Connect provider for Carnet's integration tests.
//
//   node provider.mjs <config.json>
//
// Binds 127.0.0.1 (port from the config, 0 = any free port), then prints
// exactly one line "READY http://127.0.0.1:<port>" on stdout. Everything else
// (oidc-provider notices and warnings, request errors) goes to stderr.
// Exits on SIGTERM/SIGINT and, when its stdin is a pipe, at that pipe's EOF, so
// a provider whose parent died (and with it the stdin pipe) goes away too.
//
// See README.md beside this file for the config format and the browser steps.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { fstatSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import * as querystring from 'node:querystring';

// oidc-provider prints its NOTICEs with console.info (stdout): keep stdout for
// the READY line only.
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

// Imported after the console redirection on purpose.
const { default: Provider } = await import('oidc-provider');

function fail(message) {
  console.error(`provider.mjs: ${message}`);
  process.exit(2);
}

const configPath = process.argv[2];
if (!configPath) fail('usage: node provider.mjs <config.json>');

let config;
try {
  config = JSON.parse(readFileSync(configPath, 'utf8'));
} catch (err) {
  fail(`cannot read ${configPath}: ${err.message}`);
}

const port = Number(config.port ?? 0);
const accounts = config.accounts ?? {};
const acrValues = Array.isArray(config.acr_values) ? config.acr_values : [];
const clients = (config.clients ?? []).map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  redirect_uris: c.redirect_uris,
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
  id_token_signed_response_alg: 'RS256',
}));
if (!clients.length) fail('config has no clients');

// Every claim name used by any account is released with the `profile` scope,
// at userinfo (as FranceConnect and Pro Santé Connect do); `openid` gives `sub`.
const claimNames = new Set();
for (const claims of Object.values(accounts)) {
  for (const name of Object.keys(claims ?? {})) {
    if (name !== 'sub') claimNames.add(name);
  }
}
const releasedClaims = ['sub', ...claimNames];

// Fresh signing key for every run (RS256, published at jwks_uri).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `carnet-test-${randomBytes(4).toString('hex')}`,
  use: 'sig',
  alg: 'RS256',
};

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Bind first: the issuer must carry the real port.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: {
    keys: [randomBytes(32).toString('hex')],
    // Cookies do not isolate by port: prefixed so they cannot collide with the
    // cookies of the server under test, which also lives on 127.0.0.1.
    names: {
      session: 'op_session',
      interaction: 'op_interaction',
      resume: 'op_interaction_resume',
    },
  },
  claims: {
    openid: ['sub'],
    profile: releasedClaims,
    ...(acrValues.length ? { acr: null } : {}),
  },
  scopes: ['openid', 'profile', 'offline_access'],
  // As the OIDC default (and FranceConnect / Pro Santé Connect): scope-released claims
  // are given at userinfo, not in the ID token, so the relying party must ask there.
  conformIdTokenClaims: true,
  ...(acrValues.length ? { acrValues } : {}),
  responseTypes: ['code'],
  pkce: {
    required: () => true,
  },
  features: {
    devInteractions: { enabled: true },
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 600,
    ClientCredentials: 600,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 3600,
    Session: 3600,
  },
  clientBasedCORS: () => true,
  async findAccount(_ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    const claims = accounts[id] ?? {};
    return {
      accountId: id,
      async claims() {
        return { ...claims, sub: id };
      },
    };
  },
  async renderError(ctx, out, error) {
    console.error('provider.mjs: error page:', out, error?.stack ?? '');
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>oops! something went wrong</title></head><body>
<h1>oops! something went wrong</h1>
${Object.entries(out).map(([k, v]) => `<pre><strong>${escapeHtml(k)}</strong>: ${escapeHtml(v)}</pre>`).join('\n')}
</body></html>`;
  },
});

// The dev login form accepts any login and ignores the password. Intercept its
// submission to (a) refuse logins that are not configured accounts (the
// authorization then ends at the redirect_uri with error=access_denied) and
// (b) record an acr (and amr=pwd) when acr_values are configured. The consent
// submission and everything else go through untouched.
provider.use(async (ctx, next) => {
  const match = ctx.method === 'POST' && /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (!match) return next();

  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch {
    return next(); // let the provider render its own error
  }
  if (details.prompt.name !== 'login') return next();

  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const body = querystring.parse(Buffer.concat(chunks).toString('utf8'));
  const login = String(body.login ?? '');

  let result;
  if (!Object.hasOwn(accounts, login)) {
    result = { error: 'access_denied', error_description: `unknown account ${login}` };
  } else {
    const requested = String(details.params.acr_values ?? '').split(' ').filter(Boolean);
    const acr = requested.find((v) => acrValues.includes(v)) ?? acrValues[0];
    result = { login: { accountId: login, amr: ['pwd'], ...(acr ? { acr } : {}) } };
  }
  ctx.set('cache-control', 'no-store');
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.respond = false;
});

provider.on('server_error', (_ctx, err) => console.error('provider.mjs: server_error', err));

server.on('request', provider.callback());

function shutdown() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// Die with the parent: when stdin is a pipe (or socket), its EOF means the
// parent closed it or is gone. A stdin of /dev/null or a terminal is not
// watched, so `Stdio::null()` does not stop the provider at once.
const stdinStat = fstatSync(0, { throwIfNoEntry: false });
if (stdinStat && (stdinStat.isFIFO() || stdinStat.isSocket())) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}

process.stdout.write(`READY ${issuer}\n`);
