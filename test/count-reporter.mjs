/**
 * A node:test reporter for test/run.mjs: writes one JSON line with the number
 * of tests that really ran. Unlike the built-in summaries it does not count a
 * test file without any test in it (node reports such a file as one passing test).
 */
export default async function* countReporter(source) {
  const counts = { tests: 0, pass: 0, fail: 0, skipped: 0, todo: 0 };
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { data } = event;
    if (data.details?.type === 'suite') continue;
    // The wrapper node creates for each file is named by the file's path.
    const isFileWrapper = data.nesting === 0 && data.name === data.file;
    if (event.type === 'test:fail') {
      // A file that crashes before or outside its tests fails as its wrapper: count it.
      counts.fail++;
      if (!isFileWrapper) counts.tests++;
      continue;
    }
    if (isFileWrapper) continue;
    counts.tests++;
    if (data.skip) counts.skipped++;
    else if (data.todo) counts.todo++;
    else counts.pass++;
  }
  yield `${JSON.stringify(counts)}\n`;
}
