// A fake gateway on the other end of /socket2socket: answers every JSON-RPC
// request with a result, confirms eth_subscribe and then pushes newHeads.
const rec = () => globalThis.__k6rec;

export class WebSocket {
  constructor(url, protocols, params) {
    this.url = url;
    this.closed = false;
    this.timers = [];
    rec().sockets.push({ url, params, sent: [] });
    this.log = rec().sockets[rec().sockets.length - 1];
    globalThis.setTimeout(() => this.onopen && this.onopen(), 1);
  }

  deliver(msg, delay) {
    const t = globalThis.setTimeout(() => {
      if (!this.closed && this.onmessage) {
        this.onmessage({ data: JSON.stringify(msg) });
      }
    }, delay);
    this.timers.push(t);
  }

  send(data) {
    if (this.closed) {
      throw new Error('send on a closed websocket');
    }
    const req = JSON.parse(data);
    this.log.sent.push(req);
    if (req.method === 'eth_subscribe') {
      this.deliver({ jsonrpc: '2.0', id: req.id, result: '0xfeed' }, 2);
      for (let i = 1; i <= 5; i++) {
        this.deliver({ jsonrpc: '2.0', method: 'eth_subscription', params: { subscription: '0xfeed', result: { number: `0x${i}` } } }, 5 + 20 * i);
      }
    } else if (req.method === 'eth_unsubscribe') {
      this.deliver({ jsonrpc: '2.0', id: req.id, result: true }, 2);
    } else {
      this.deliver({ jsonrpc: '2.0', id: req.id, result: '0x1' }, 2);
    }
  }

  close() {
    this.closed = true;
    this.timers.forEach((t) => globalThis.clearTimeout(t));
    this.log.closed = true;
  }
}
