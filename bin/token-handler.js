#!/usr/bin/env node
// The published entry point: runs the compiled service when built, else the TypeScript source
// (Node 24 strips types natively).
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/main.js', import.meta.url);
await import(existsSync(compiled) ? compiled.href : new URL('../src/main.ts', import.meta.url).href);
