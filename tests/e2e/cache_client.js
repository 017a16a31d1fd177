// tests/e2e/cache_client.js: a small actions/cache client for the e2e tests, making the
// requests @actions/cache's legacy client makes (ACTIONS_CACHE_URL + "_apis/artifactcache/",
// "Authorization: Bearer $ACTIONS_RUNTIME_TOKEN"): look up by keys and version, reserve,
// upload in chunks with Content-Range, commit with the size, download the archive.
//
//   node cache_client.js restore KEY DIR   prints "cache hit KEY" (DIR filled) or "cache miss"
//   node cache_client.js save KEY DIR      prints "cache saved KEY (N bytes)"
//   node cache_client.js forge KEY REPO    looks KEY up with the job's token re-written to name
//                                          repository REPO (its signature kept): an attack;
//                                          prints "forged: HTTP STATUS"
//
// Archives are tar files made by the image's tar. Exit status 1 on any HTTP error.
'use strict';
const http = require('http');
const fs = require('fs');
const { execFileSync } = require('child_process');

const base = process.env.ACTIONS_CACHE_URL;
const token = process.env.ACTIONS_RUNTIME_TOKEN;
const VERSION = 'e2e-tar-1';
const CHUNK = 4 << 20;

let bearer = token;

function request(method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: Object.assign({
      Accept: 'application/json;api-version=6.0-preview.1',
      Authorization: 'Bearer ' + bearer }, headers) }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

function api(path) {
  return base + '_apis/artifactcache/' + path;
}

function fail(what, r) {
  console.log(what + ': HTTP ' + r.status + ' ' + r.body.toString().slice(0, 200));
  process.exit(1);
}

async function restore(key, dir) {
  const r = await request('GET', api('cache?keys=' + encodeURIComponent(key) + '&version=' +
                                     VERSION));
  if (r.status === 204) {
    console.log('cache miss');
    return;
  }
  if (r.status !== 200) fail('lookup', r);
  const entry = JSON.parse(r.body.toString());
  const d = await request('GET', entry.archiveLocation);
  if (d.status !== 200) fail('download', d);
  fs.writeFileSync('/tmp/cache-restore.tar', d.body);
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('tar', ['xf', '/tmp/cache-restore.tar', '-C', dir]);
  console.log('cache hit ' + entry.cacheKey);
}

async function save(key, dir) {
  execFileSync('tar', ['cf', '/tmp/cache-save.tar', '-C', dir, '.']);
  const data = fs.readFileSync('/tmp/cache-save.tar');
  const json = { 'Content-Type': 'application/json' };
  let r = await request('POST', api('caches'), json,
                        JSON.stringify({ key, version: VERSION, cacheSize: data.length }));
  if (r.status !== 200 && r.status !== 201) fail('reserve', r);
  const id = JSON.parse(r.body.toString()).cacheId;
  for (let start = 0; start < data.length; start += CHUNK) {
    const end = Math.min(start + CHUNK, data.length) - 1;
    r = await request('PATCH', api('caches/' + id), {
      'Content-Type': 'application/octet-stream',
      'Content-Range': 'bytes ' + start + '-' + end + '/*' }, data.subarray(start, end + 1));
    if (r.status < 200 || r.status > 299) fail('upload', r);
  }
  r = await request('POST', api('caches/' + id), json, JSON.stringify({ size: data.length }));
  if (r.status < 200 || r.status > 299) fail('commit', r);
  console.log('cache saved ' + key + ' (' + data.length + ' bytes)');
}

// The job's cache token is the URL's last path segment (ACTIONS_CACHE_URL=http://IP:PORT/TOKEN/);
// the forgery goes where the server reads it, in the URL, and in the bearer as well.
async function forge(key, repo) {
  const segs = base.split('/');
  const urlToken = segs[segs.length - 2];
  const [claims, sig] = urlToken.split('.');
  const c = JSON.parse(Buffer.from(claims, 'base64url').toString());
  c.repo = repo;
  const forged = Buffer.from(JSON.stringify(c)).toString('base64url') + '.' + sig;
  bearer = forged;
  segs[segs.length - 2] = forged;
  const r = await request('GET', segs.join('/') + '_apis/artifactcache/cache?keys=' +
                          encodeURIComponent(key) + '&version=' + VERSION);
  console.log('forged: HTTP ' + r.status);
}

const [cmd, key, dir] = process.argv.slice(2);
if (!base || !token) {
  console.log('no ACTIONS_CACHE_URL or ACTIONS_RUNTIME_TOKEN');
  process.exit(1);
}
(cmd === 'save' ? save(key, dir) : cmd === 'forge' ? forge(key, dir) : restore(key, dir))
  .catch((e) => {
    console.log(String(e));
    process.exit(1);
  });
