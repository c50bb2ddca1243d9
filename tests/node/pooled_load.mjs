// A pooled Node client under load, as an agent uses it: one Anthropic TypeScript SDK client on
// one undici pool (EnvHttpProxyAgent reads HTTPS_PROXY; the CA comes from NODE_EXTRA_CA_CERTS),
// shared by a few workers that each make a call (streamed or not), then think for a moment.
// Runs until the file argv[2] exists; appends one JSON line per call to argv[3]: when it was
// sent and ended, whether it failed, how many attempts the SDK made (its default retries), and
// the User-Agent that marks it in the ledger.
import { appendFileSync, existsSync } from "node:fs";
import Anthropic from "@anthropic-ai/sdk";
import { EnvHttpProxyAgent } from "undici";

const [stopFile, outFile] = process.argv.slice(2);
const attempts = new Map();
const dispatcher = new EnvHttpProxyAgent();
const client = new Anthropic({
  apiKey: "sk-ant-node-load-0001",
  fetchOptions: { dispatcher },
  fetch: async (url, init) => {
    const marker = new Headers(init?.headers).get("user-agent");
    attempts.set(marker, (attempts.get(marker) ?? 0) + 1);
    return fetch(url, init);
  },
});
let sequence = 0;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function worker() {
  while (!existsSync(stopFile)) {
    const number = sequence++;
    const marker = `pooled-load-node/${process.pid}-${number}`;
    const stream = number % 2 === 0;
    const item = { marker, sent: Date.now() / 1000, stream, port: null, error: null };
    try {
      const params = {
        model: "claude-sonnet-4-5",
        max_tokens: 256,
        messages: [{ role: "user", content: "Say hello" }],
      };
      const options = { headers: { "User-Agent": marker } };
      if (stream) {
        const final = await client.messages.stream(params, options).finalMessage();
        if (!final.content.length) throw new Error("empty stream");
      } else {
        const message = await client.messages.create(params, options);
        if (!message.content.length) throw new Error("empty message");
      }
    } catch (error) {
      item.error = String(error);
    }
    item.ended = Date.now() / 1000;
    item.attempts = attempts.get(marker) ?? 0;
    appendFileSync(outFile, JSON.stringify(item) + "\n");
    await sleep(600 + Math.random() * 600);
  }
}

await Promise.all([worker(), worker(), worker(), worker()]);
await dispatcher.close();
