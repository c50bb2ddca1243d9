// The Anthropic TypeScript SDK, streaming a message. Node 20's fetch ignores HTTPS_PROXY, so,
// as the SDK's maintainers advise, the proxy comes in through undici's EnvHttpProxyAgent (which
// reads HTTPS_PROXY / NO_PROXY); the meter's CA comes from NODE_EXTRA_CA_CERTS.
import Anthropic from "@anthropic-ai/sdk";
import { EnvHttpProxyAgent } from "undici";

const client = new Anthropic({
  apiKey: "sk-ant-node-test-secret",
  maxRetries: 0,
  fetchOptions: { dispatcher: new EnvHttpProxyAgent() },
});
const stream = client.messages.stream({
  model: "claude-sonnet-4-5",
  max_tokens: 256,
  messages: [{ role: "user", content: "Say hello" }],
});
let text = "";
stream.on("text", (piece) => {
  text += piece;
});
const final = await stream.finalMessage();
console.log(JSON.stringify({ text, usage: final.usage }));
