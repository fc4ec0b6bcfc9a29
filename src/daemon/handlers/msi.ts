/**
 * SIGNAL_MSI and SIGNAL_MSI_BATCH: the hot path. struct kvm_msi is read straight from the
 * receive buffer, field by field, into VmDevices.signalMsi — no decoding into objects, no
 * allocation per MSI.
 */
import {
  KVM_MSI_ADDRESS_HI_OFFSET,
  KVM_MSI_ADDRESS_LO_OFFSET,
  KVM_MSI_DATA_OFFSET,
  KVM_MSI_DEVID_OFFSET,
  KVM_MSI_FLAGS_OFFSET,
  KVM_MSI_SIZE,
  MSI_BATCH_HEAD_SIZE,
} from '../../protocol/constants.js';
import type { RequestContext } from '../context.js';

/** Status 1 delivered, 0 dropped, negative errno (KVM_SIGNAL_MSI). */
export function handleSignalMsi(ctx: RequestContext): number {
  const v = ctx.view;
  const p = ctx.payload;
  return ctx.state.vm.signalMsi(
    v.getUint32(p + KVM_MSI_ADDRESS_LO_OFFSET, true),
    v.getUint32(p + KVM_MSI_ADDRESS_HI_OFFSET, true),
    v.getUint32(p + KVM_MSI_DATA_OFFSET, true),
    v.getUint32(p + KVM_MSI_FLAGS_OFFSET, true),
    v.getUint32(p + KVM_MSI_DEVID_OFFSET, true),
  );
}

/**
 * In order; stops at the first negative status, which becomes the reply status.
 * `processed` counts the MSIs handled before the failing one, `delivered` those with
 * status 1; both are filled whatever the status.
 */
export function handleSignalMsiBatch(ctx: RequestContext): number {
  const v = ctx.view;
  const vm = ctx.state.vm;
  const count = v.getUint32(ctx.payload, true);
  let p = ctx.payload + MSI_BATCH_HEAD_SIZE;
  let processed = 0;
  let delivered = 0;
  let status = 0;
  for (; processed < count; processed++, p += KVM_MSI_SIZE) {
    const r = vm.signalMsi(
      v.getUint32(p + KVM_MSI_ADDRESS_LO_OFFSET, true),
      v.getUint32(p + KVM_MSI_ADDRESS_HI_OFFSET, true),
      v.getUint32(p + KVM_MSI_DATA_OFFSET, true),
      v.getUint32(p + KVM_MSI_FLAGS_OFFSET, true),
      v.getUint32(p + KVM_MSI_DEVID_OFFSET, true),
    );
    if (r < 0) {
      status = r;
      break;
    }
    if (r === 1) delivered++;
  }
  ctx.out.setUint32(ctx.fields, processed, true);
  ctx.out.setUint32(ctx.fields + 4, delivered, true);
  return status;
}
