/**
 * RESTORE_TABLES when the ITS's event storage cannot hold the image: -ENOMEM at the ITE that
 * needs the first page beyond the cap (KVM: the ITE allocation fails), and nothing changes.
 */
import { describe, expect, it } from 'vitest';
import { TableError } from '../../../src/its/abi/errors.js';
import { restoreTables } from '../../../src/its/abi/restore.js';
import { ItsTableSaver } from '../../../src/its/abi/save.js';
import { Errno } from '../../../src/util/errno.js';
import { cmd, ittOf, makeVm } from '../helpers.js';

describe('restore: event storage exhausted', () => {
  it('fails with ENOMEM before changing anything', () => {
    // Cap 3 pages of 256 EventIDs. Image: device 1 with EventIDs 0 and 256 (2 pages), device 2
    // with EventID 5 (1 page). After clearing, device 7 takes 1 page: 2 free < 3 needed.
    const { its, q, lpis } = makeVm({ maxEventPages: 3 });
    q.run(cmd.mapc(0, 1), cmd.mapd(1, 9, ittOf(1)), cmd.mapd(2, 3, ittOf(2)));
    q.run(cmd.mapti(1, 0, 8192, 0), cmd.mapti(1, 256, 8193, 0), cmd.mapti(2, 5, 8194, 0));
    new ItsTableSaver().save(its);
    its.clearTranslations();
    q.run(cmd.mapc(5, 0), cmd.mapd(7, 3, ittOf(7)), cmd.mapti(7, 1, 8300, 5));
    expect(its.freeEventPages()).toBe(2);

    let err: unknown = null;
    try {
      restoreTables(its);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TableError);
    const te = err as TableError;
    expect(te.errno).toBe(Errno.ENOMEM);
    expect(te.table).toMatch(/ITT of device 0x0*2\b/);
    expect(te.index).toBe(5);

    // Unchanged: only device 7 and collection 5, LPIs as before.
    const devices: number[] = [];
    its.forEachDevice((d) => devices.push(d));
    expect(devices).toEqual([7]);
    const cols: number[] = [];
    its.forEachCollection((c) => cols.push(c));
    expect(cols).toEqual([5]);
    expect(its.eventCount()).toBe(1);
    expect([8192, 8193, 8194, 8300].map((i) => lpis.exists(i))).toEqual([false, false, false, true]);

    // With room (device 7 gone), the same image restores.
    q.run(cmd.mapd(7, 0, 0, false));
    its.clearTranslations();
    expect(restoreTables(its)).toMatchObject({ collections: 1, devices: 2, events: 3 });
    expect([its.translate(1, 0), its.translate(1, 256), its.translate(2, 5)]).toEqual([8192, 8193, 8194]);
  });
});
