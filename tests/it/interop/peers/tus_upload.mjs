// tus-js-client (npm), in its IETF mode, uploading a file: the peer of the
// resumable-upload interop test.
//
//   TUS_DIR=<dir with node_modules/tus-js-client> node tus_upload.mjs <endpoint> <file> <protocol>
//
// <protocol> is tus-js-client's option: `ietf-draft-03` (interop version 5)
// or `ietf-draft-05` (interop version 6). The whole file is one PATCH
// (chunkSize: Infinity, the default); a dropped connection is retried
// (HEAD for the offset, then PATCH the rest) after 50 ms. Prints progress
// events to stderr and, on success, one JSON line on stdout: the upload's
// URL, the offsets it appended from, and the `x-sha256` and `upload-offset`
// of the last answer. Exit 0 on success, 1 on an upload error, 64 usage.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const [endpoint, file, protocol] = process.argv.slice(2);
if (!endpoint || !file || !protocol) {
  console.error('usage: node tus_upload.mjs <endpoint> <file> <protocol>');
  process.exit(64);
}
const dir = process.env.TUS_DIR || process.cwd();
const require = createRequire(path.join(dir, 'node_modules', 'x.js'));
const { Upload } = require('tus-js-client');

const data = fs.readFileSync(file);
const starts = [];
const upload = new Upload(data, {
  endpoint,
  protocol,
  retryDelays: [50, 100, 200, 400],
  uploadSize: data.length,
  onBeforeRequest(req) {
    if (req.getMethod() === 'PATCH') {
      starts.push(Number(req.getHeader('Upload-Offset')));
    }
    console.error(`${req.getMethod()} ${req.getURL()}`);
  },
  onError(err) {
    console.error(`upload failed: ${err}`);
    process.exit(1);
  },
  onSuccess(payload) {
    const res = payload && payload.lastResponse;
    console.log(
      JSON.stringify({
        url: upload.url,
        appends: starts,
        sha256: res ? res.getHeader('x-sha256') : null,
        offset: res ? res.getHeader('upload-offset') : null,
      }),
    );
    process.exit(0);
  },
});
upload.start();
