// @supabase/storage-js and tus-js-client, unchanged, against Ferrobase.
// Env: FB_URL (project URL), FB_SERVICE, FB_ANON. Exit code != 0 on failure.
import assert from 'node:assert/strict';
import { StorageClient } from '@supabase/storage-js';
import * as tus from 'tus-js-client';

const url = `${process.env.FB_URL}/storage/v1`;
const key = process.env.FB_SERVICE;
const storage = new StorageClient(url, { apikey: key, Authorization: `Bearer ${key}` });

function ok(result, what) {
  if (result.error) throw new Error(`${what}: ${result.error.message} (${JSON.stringify(result.error)})`);
  return result.data;
}

ok(await storage.createBucket('js', { public: true, fileSizeLimit: '5MB', allowedMimeTypes: ['text/*', 'image/*', 'application/octet-stream'] }), 'createBucket');
const buckets = ok(await storage.listBuckets(), 'listBuckets');
assert.deepEqual(buckets.map((b) => b.id), ['big', 'js']);
assert.equal(ok(await storage.getBucket('js'), 'getBucket').file_size_limit, 5 * 1024 * 1024);
ok(await storage.updateBucket('js', { public: true, allowedMimeTypes: null, fileSizeLimit: null }), 'updateBucket');
const dup = await storage.createBucket('js');
assert.ok(dup.error, 'duplicate bucket is an error');

const js = storage.from('js');
// Blob (multipart form) and Buffer (raw body) uploads.
const up = ok(await js.upload('folder/hello.txt', new Blob(['hello from js'], { type: 'text/plain' }), { cacheControl: '120', metadata: { who: 'js' } }), 'upload blob');
assert.equal(up.path, 'folder/hello.txt');
assert.equal(up.fullPath, 'js/folder/hello.txt');
ok(await js.upload('raw.bin', Buffer.from([1, 2, 3]), { contentType: 'application/octet-stream' }), 'upload buffer');
const again = await js.upload('raw.bin', Buffer.from([4]));
assert.ok(again.error, 'upload without upsert over an existing object fails');
ok(await js.upload('raw.bin', Buffer.from([4, 5]), { upsert: true, contentType: 'application/octet-stream' }), 'upsert');
ok(await js.update('raw.bin', Buffer.from([6, 7, 8]), { contentType: 'application/octet-stream' }), 'update');

const blob = ok(await js.download('folder/hello.txt'), 'download');
assert.equal(await blob.text(), 'hello from js');
assert.deepEqual([...new Uint8Array(await ok(await js.download('raw.bin'), 'download raw').arrayBuffer())], [6, 7, 8]);
const info = ok(await js.info('folder/hello.txt'), 'info');
assert.equal(info.size, 13);
assert.equal(info.contentType, 'text/plain');
assert.deepEqual(info.metadata, { who: 'js' });
assert.equal(ok(await js.exists('folder/hello.txt'), 'exists'), true);
assert.equal((await js.exists('nope.txt')).data, false);

const top = ok(await js.list(), 'list');
assert.deepEqual(top.map((e) => e.name), ['folder', 'raw.bin']);
assert.equal(top[0].id, null);
const inside = ok(await js.list('folder', { limit: 10, offset: 0, sortBy: { column: 'name', order: 'desc' }, search: 'hel' }), 'list folder');
assert.deepEqual(inside.map((e) => e.name), ['hello.txt']);
assert.equal(inside[0].metadata.size, 13);

ok(await js.copy('folder/hello.txt', 'folder/copy.txt'), 'copy');
ok(await js.move('folder/copy.txt', 'moved.txt'), 'move');

const { publicUrl } = js.getPublicUrl('moved.txt').data;
assert.equal(await (await fetch(publicUrl)).text(), 'hello from js');
const signed = ok(await js.createSignedUrl('folder/hello.txt', 60), 'createSignedUrl');
assert.equal(await (await fetch(signed.signedUrl)).text(), 'hello from js');
const signedDl = ok(await js.createSignedUrl('folder/hello.txt', 60, { download: true }), 'createSignedUrl download');
const dlResp = await fetch(signedDl.signedUrl);
assert.match(dlResp.headers.get('content-disposition'), /attachment/);
const many = ok(await js.createSignedUrls(['moved.txt', 'raw.bin'], 60), 'createSignedUrls');
assert.equal(many.length, 2);
assert.ok(many.every((m) => m.signedUrl && !m.error));

const upl = ok(await js.createSignedUploadUrl('via-link.txt'), 'createSignedUploadUrl');
ok(await js.uploadToSignedUrl('via-link.txt', upl.token, new Blob(['linked'], { type: 'text/plain' })), 'uploadToSignedUrl');
assert.equal(await ok(await js.download('via-link.txt'), 'download linked').text(), 'linked');

const bad = await js.upload('../escape.txt', Buffer.from('x'));
assert.ok(bad.error, 'traversal refused');

// tus-js-client, configured as Supabase documents it.
const data = Buffer.alloc(7 * 1024 * 1024 + 11, 42);
await new Promise((resolve, reject) => {
  const upload = new tus.Upload(data, {
    endpoint: `${url}/upload/resumable`,
    retryDelays: [0, 200],
    headers: { authorization: `Bearer ${key}`, 'x-upsert': 'true' },
    uploadDataDuringCreation: true,
    removeFingerprintOnSuccess: true,
    metadata: { bucketName: 'big', objectName: 'tus/big.bin', contentType: 'application/octet-stream', cacheControl: '3600' },
    chunkSize: 6 * 1024 * 1024,
    onError: reject,
    onSuccess: resolve,
  });
  upload.start();
});
const big = storage.from('big');
const got = Buffer.from(await ok(await big.download('tus/big.bin'), 'download tus').arrayBuffer());
assert.equal(got.length, data.length);
assert.ok(got.equals(data));

// Image transforms through the client's own URLs.
import { readFileSync } from 'node:fs';
ok(await js.upload('pic.png', readFileSync(process.env.FB_PNG), { contentType: 'image/png' }), 'upload png');
const small = ok(await js.download('pic.png', { transform: { width: 40, height: 20, resize: 'fill' } }), 'download transformed');
assert.ok(small.size > 0 && small.type.startsWith('image/'), `transformed type ${small.type}`);
const tPublic = js.getPublicUrl('pic.png', { transform: { width: 10, height: 10 } }).data.publicUrl;
assert.equal((await fetch(tPublic)).status, 200, tPublic);
const tSigned = ok(await js.createSignedUrl('pic.png', 60, { transform: { width: 16, height: 16 } }), 'signed transform');
assert.match(tSigned.signedUrl, /render\/image\/sign/);
assert.equal((await fetch(tSigned.signedUrl)).status, 200);
ok(await js.remove(['pic.png']), 'remove png');

const removed = ok(await js.remove(['moved.txt', 'raw.bin', 'folder/hello.txt', 'via-link.txt']), 'remove');
assert.equal(removed.length, 4);
ok(await storage.emptyBucket('js'), 'emptyBucket');
ok(await storage.deleteBucket('js'), 'deleteBucket');
console.log('storage-js + tus-js-client OK');
