#!/usr/bin/env node
// The command-line entry point (`npx token-handler`, `npm start`).
//
// Which code runs: in a checkout, always src/ (Node 24 strips the types itself, so what runs is what you
// edited; a dist/ left over from an earlier `npm run build` is never picked up by accident). In an
// installed package (this file under node_modules/), Node refuses to strip types, so the compiled dist/
// runs: `npm pack` builds it from the same sources (the `prepack` script). `node dist/main.js` runs a
// build explicitly.
import './node-version.js';
import { runEntry } from './entry.js';

await runEntry('main');
