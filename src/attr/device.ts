/**
 * What every device behind a device id offers: KVM_{SET,GET,HAS}_DEVICE_ATTR by group, each
 * group a small handler (a dispatch table by group number instead of one big switch).
 */
import { Errno, ErrnoError } from '../util/errno.js';

export interface AttrGroup {
  /** Returns the value a GET would now return (0 for controls). */
  set(attr: bigint, value: bigint): bigint;
  get(attr: bigint): bigint;
  /** Throws as KVM_HAS_DEVICE_ATTR fails (-ENXIO unknown attribute). */
  has(attr: bigint): void;
}

export abstract class AttrDevice {
  abstract readonly type: number;
  abstract readonly name: string;
  protected abstract readonly groups: ReadonlyMap<number, AttrGroup>;

  constructor(readonly id: number) {}

  protected group(group: number): AttrGroup {
    const g = this.groups.get(group);
    if (g === undefined) throw new ErrnoError(Errno.ENXIO, `${this.name}: attribute group ${group} is not supported`);
    return g;
  }

  setAttr(group: number, attr: bigint, value: bigint): bigint {
    return this.group(group).set(attr, value);
  }
  getAttr(group: number, attr: bigint): bigint {
    return this.group(group).get(attr);
  }
  hasAttr(group: number, attr: bigint): void {
    this.group(group).has(attr);
  }
}

export function noSuchAttr(device: string, group: string, attr: bigint, errno: number = Errno.ENXIO): ErrnoError {
  return new ErrnoError(errno, `${device}: ${group} attribute ${attr} is not supported`);
}
