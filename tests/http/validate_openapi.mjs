// Validates the OpenAPI document with a real OpenAPI 3.1 validator from the npm registry
// (@seriousme/openapi-schema-validator: the official OAS 3.1 JSON schemas, checked with ajv),
// then resolves every $ref.
//
//   node validate_openapi.mjs <program that prints the document>
//
// The validator's node_modules directory comes from EMPORIUM_TEST_NODE_MODULES, which
// scripts/test.sh sets after installing it with npm.

import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { exit, env, argv } from "node:process";
import { pathToFileURL } from "node:url";

const modules = env.EMPORIUM_TEST_NODE_MODULES;
if (!modules) {
  console.error("EMPORIUM_TEST_NODE_MODULES is not set: run the suite through scripts/test.sh");
  exit(2);
}
const entry = join(modules, "@seriousme", "openapi-schema-validator", "index.js");
const { Validator } = await import(pathToFileURL(entry).href);

const text = execFileSync(argv[2], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
const document = JSON.parse(text);

const validator = new Validator();
const result = await validator.validate(document);
if (!result.valid) {
  console.error("the document is not valid OpenAPI:");
  console.error(JSON.stringify(result.errors, null, 2));
  exit(1);
}
if (validator.version !== "3.1") {
  console.error(`validated as OpenAPI ${validator.version}, expected 3.1`);
  exit(1);
}
// Every $ref must point somewhere: resolveRefs throws on a dangling one.
validator.resolveRefs();
const paths = Object.keys(document.paths ?? {});
let operations = 0;
for (const item of Object.values(document.paths ?? {}))
  operations += Object.keys(item).filter((k) =>
    ["get", "put", "post", "delete", "options", "head", "patch", "trace"].includes(k)).length;
console.log(`valid OpenAPI ${validator.version}: ${paths.length} paths, ${operations} operations`);
