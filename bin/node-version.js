// The first thing every entry point loads (bin/token-handler.js, bin/demo.js, src/main.ts, the build):
// plain JavaScript that any Node.js parses, so an older Node gets one clear line instead of
// ERR_UNKNOWN_FILE_EXTENSION ".ts" (Node 20 cannot load the TypeScript sources at all) or a stack trace
// from an API it lacks. Keep it free of imports and of syntax newer than ES2020.
// The same major is in package.json `engines` and in .nvmrc (test/package/node-version.test.ts holds them equal).
export const REQUIRED_NODE_MAJOR = 24;

const major = Number(process.versions.node.split('.')[0]);
if (!(major >= REQUIRED_NODE_MAJOR)) {
  process.stderr.write(
    `token-handler needs Node.js ${REQUIRED_NODE_MAJOR} or newer, but this is Node.js ${process.versions.node} (${process.execPath}). ` +
      `Install Node.js ${REQUIRED_NODE_MAJOR}: \`nvm install\` in this directory (it reads .nvmrc), or the official binaries from https://nodejs.org/en/download\n`,
  );
  process.exit(1);
}
