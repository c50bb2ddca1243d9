"""A user's script: N OpenAI chat calls through the proxy in the environment, standard library
only (urllib reads HTTPS_PROXY, OpenSSL reads SSL_CERT_FILE), each on a new connection.

Copied into temporary git repositories by tests/test_attribution.py and run there as
`python chat_once.py [N] [USER_AGENT]`; prints the number of calls that succeeded. N may be
`until:PATH`: call until that file exists.
"""

import json
import os
import sys
import urllib.request

BODY = {"model": "gpt-4.1", "stream": False, "messages": [{"role": "user", "content": "hi"}]}


def main() -> None:
    count = sys.argv[1] if len(sys.argv) > 1 else "1"
    agent = sys.argv[2] if len(sys.argv) > 2 else "chat-once/1.0"
    stop_file = count.removeprefix("until:") if count.startswith("until:") else None
    ok = done = 0
    while (done < int(count)) if stop_file is None else not os.path.exists(stop_file):
        done += 1
        request = urllib.request.Request(
            "https://api.openai.com/v1/chat/completions",
            data=json.dumps(BODY).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Bearer sk-test-attribution",
                "User-Agent": agent,
            },
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            ok += "choices" in json.loads(response.read())
    print(ok)


if __name__ == "__main__":
    main()
