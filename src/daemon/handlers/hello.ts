/** HELLO: protocol version, ownership of the VM, features. */
import { PROTOCOL_VERSION } from '../../protocol/constants.js';
import { HelloReplyCodec, HelloRequestCodec } from '../../protocol/hello.js';
import { Errno, ErrnoError } from '../../util/errno.js';
import type { RequestContext } from '../context.js';

export function handleHello(ctx: RequestContext): number {
  const { session, state } = ctx;
  if (session.helloDone) throw new ErrnoError(Errno.EINVAL, 'second HELLO on this connection');
  const req = HelloRequestCodec.decode(ctx.view, ctx.payload, ctx.size);
  if (req.version !== PROTOCOL_VERSION) {
    // The fields carry our version so the frontend can tell what it talked to.
    HelloReplyCodec.encode(ctx.out, ctx.fields, { version: PROTOCOL_VERSION, resumed: 0, features: 0n });
    session.closeAfterReply = true;
    state.log.warn({ conn: session.id, version: req.version }, 'HELLO with an unsupported protocol version');
    return -Errno.EPROTO;
  }
  if (state.owner !== null && state.owner.id !== session.id) {
    session.closeAfterReply = true;
    state.counters.connectionsRefused++;
    state.log.warn({ conn: session.id, owner: state.owner.id }, 'HELLO refused: another frontend owns the VM');
    return -Errno.EBUSY;
  }
  const granted = Number(req.features & BigInt(state.supportedFeatures));
  const resumed = state.vm.hasState ? 1 : 0;
  state.owner = session;
  session.helloDone = true;
  session.grantedFeatures = granted;
  HelloReplyCodec.encode(ctx.out, ctx.fields, { version: PROTOCOL_VERSION, resumed, features: BigInt(granted) });
  state.log.info({ conn: session.id, wanted: `0x${req.features.toString(16)}`, granted, resumed }, 'frontend attached');
  return 0;
}
