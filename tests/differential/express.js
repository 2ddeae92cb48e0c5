// An Express app as its docs set one up behind a proxy: `trust proxy` (so
// req.hostname comes from X-Forwarded-Host), the method-override
// middleware for its header spellings, the `_method` query parameter and
// a `_method` form field, and the router's defaults (case-insensitive,
// non-strict). The admin site is picked by host name, as the `vhost`
// middleware does. Usage: node express.js PORT NODE_MODULES_DIR
'use strict';
const path = require('path');
const [port, modules] = process.argv.slice(2);
const express = require(path.join(modules, 'express'));
const methodOverride = require(path.join(modules, 'method-override'));

const app = express();
app.set('trust proxy', true);
app.use(express.urlencoded({ extended: false }));
app.use(methodOverride('X-HTTP-Method-Override'));
app.use(methodOverride('X-HTTP-Method'));
app.use(methodOverride('X-Method-Override'));
app.use(methodOverride('_method'));
app.use(methodOverride((req) => {
  if (req.body && typeof req.body === 'object' && '_method' in req.body) {
    const m = req.body._method;
    delete req.body._method;
    return m;
  }
  return undefined;
}));

const STEER = ['x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-http-method',
  'x-method-override', 'x-forwarded-prefix', 'x-forwarded-path', 'x-forwarded-uri'];
const clean = (v) => String(v).replace(/[\r\n]/g, ' ');

function reply(area) {
  return (req, res) => {
    const lines = ['agw-diff', 'server=express', `area=${area}`, `path=${clean(req.path)}`,
      `method=${req.method}`, `host=${clean(req.hostname || '')}`, `rid=${clean(req.get('x-diff-id') || '')}`];
    for (const [k, v] of Object.entries(req.headers)) {
      if (k.startsWith('x-authgear-')) lines.push(`id.${k}=${clean(v)}`);
    }
    for (const k of STEER) {
      if (req.headers[k] !== undefined) lines.push(`steer.${k}=${clean(req.headers[k])}`);
    }
    res.type('text/plain').send(lines.join('\n') + '\n');
  };
}

app.use((req, res, next) => (req.hostname === 'admin.example.test' ? reply('admin')(req, res) : next()));
app.all(['/admin', '/admin/*rest'], reply('admin'));
app.all(['/account', '/account/*rest'], reply('account'));
app.put('/api/*rest', reply('admin'));
app.patch('/api/*rest', reply('admin'));
app.delete('/api/*rest', reply('admin'));
app.all('/api/*rest', reply('public'));
app.all(['/public', '/public/*rest'], reply('public'));
app.use(reply('other'));

app.listen(Number(port), '127.0.0.1', () => console.log(`express listening on ${port}`));
