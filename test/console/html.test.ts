import { test } from 'node:test';
import assert from 'node:assert/strict';
import { html } from '../../src/console/html.js';

test('console HTML: interpolated values are escaped, also an object parsed from JSON that has an html field; only fragments built by html`` pass through', () => {
  const fromPayload = JSON.parse('{"html":"<img src=x onerror=alert(1)>"}') as unknown;
  const out = html`<p>${'<b>&"\''}</p>${fromPayload}${[html`<i>${'<x>'}</i>`]}`.html;
  assert.equal(out, '<p>&lt;b&gt;&amp;&quot;&#39;</p>[object Object]<i>&lt;x&gt;</i>');
  assert.ok(!out.includes('<img'), 'a JSON value with an html field is not trusted');
});
