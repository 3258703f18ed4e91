import pytest

from caas_core.store import outbox

T = 1_767_600_000.0


async def test_notifications_round_trip_in_time_order(db):
    async with db.transaction() as conn:
        later = await outbox.notify(conn, "c-1", "email", "purchase_confirmed",
                                    {"amountMinor": 999, "currency": "EUR", "name": "Zoë"}, T + 10)
        first = await outbox.notify(conn, "c-1", "in_vehicle", "service_active", {"vin": "V"}, T,
                                    id="ntf_p-1_active")
        await outbox.notify(conn, "c-2", "push", "x", {}, T)
    assert first == "ntf_p-1_active" and later.startswith("ntf_")
    async with db.transaction() as conn:
        mine = await outbox.notifications_for(conn, "c-1")
        assert [n.id for n in mine] == [first, later]
        assert mine[1] == outbox.Notification(
            later, "c-1", "email", "purchase_confirmed",
            {"amountMinor": 999, "currency": "EUR", "name": "Zoë"}, T + 10, None)
        assert [n.id for n in await outbox.notifications_for(conn, "c-1", channel="email")] == [later]
        assert await outbox.mark_read(conn, first, T + 20)
        assert not await outbox.mark_read(conn, first, T + 30)  # first read wins
        assert [n.id for n in await outbox.notifications_for(conn, "c-1", unread_only=True)] == [later]
        assert (await outbox.notifications_for(conn, "c-1"))[0].read_at == T + 20
        assert await outbox.notifications_for(conn, "nobody") == []


async def test_one_notice_on_several_channels_is_one_row_each_in_channel_order(db):
    async with db.transaction() as conn:
        ids = await outbox.notify_on(conn, "c-1", ["email", "push"], "service_activated", {"vin": "V"}, T)
        assert await outbox.notify_on(conn, "c-1", [], "nothing", {}, T) == []
    async with db.transaction() as conn:
        mine = await outbox.notifications_for(conn, "c-1")
    assert [(n.id, n.channel, n.template, n.payload) for n in mine] == [
        (ids[0], "email", "service_activated", {"vin": "V"}), (ids[1], "push", "service_activated", {"vin": "V"})]


async def test_unknown_channel_is_refused(db):
    async with db.transaction() as conn:
        with pytest.raises(ValueError, match="channel"):
            await outbox.notify(conn, "c-1", "sms", "x", {}, T)
        with pytest.raises(ValueError, match="'sms'"):
            await outbox.notify_on(conn, "c-1", ["push", "sms"], "x", {}, T)


async def test_a_notification_rolls_back_with_its_state_change(db):
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await outbox.notify(conn, "c-1", "push", "refund_issued", {}, T)
            raise RuntimeError
    async with db.transaction() as conn:
        assert await outbox.notifications_for(conn, "c-1") == []


async def test_support_tickets_round_trip(db):
    diagnostics = {"errorCode": "E_OTA_TIMEOUT", "attempts": [60, 300, 900, 1800], "offline": True}
    async with db.transaction() as conn:
        t1 = await outbox.open_ticket(conn, "c-1", "WVWZZZ1JZXW000001", "Activation failed",
                                      diagnostics, T, purchase_id="p-1")
        t2 = await outbox.open_ticket(conn, "c-1", "WVWZZZ1JZXW000001", "Question", {}, T + 1)
        assert await outbox.set_ticket_status(conn, t2, "closed")
        tickets = await outbox.tickets_for(conn, "c-1")
    assert [t.id for t in tickets] == [t1, t2] and t1.startswith("tkt_")
    assert tickets[0] == outbox.Ticket(t1, "c-1", "WVWZZZ1JZXW000001", "p-1", "Activation failed",
                                       diagnostics, "open", T)
    assert (tickets[1].purchase_id, tickets[1].status) == (None, "closed")


async def test_audit_log_of_risk_decisions(db):
    async with db.transaction() as conn:
        a = await outbox.record_decision(conn, "purchase_risk", "p-1", "flag",
                                         {"score": 0.91, "rules": ["velocity"]}, T)
        await outbox.record_decision(conn, "purchase_risk", "p-2", "allow", {"score": 0.1}, T + 1)
        await outbox.record_decision(conn, "chargeback", "p-1", "suspend", {}, T + 2, id="aud_cb_p-1")
    async with db.transaction(readonly=True) as conn:
        about_p1 = await outbox.decisions(conn, subject="p-1")
        assert [d.id for d in about_p1] == [a, "aud_cb_p-1"]
        assert about_p1[0] == outbox.Decision(a, "purchase_risk", "p-1", "flag",
                                              {"score": 0.91, "rules": ["velocity"]}, T)
        assert [d.subject for d in await outbox.decisions(conn, kind="purchase_risk")] == ["p-1", "p-2"]
        assert len(await outbox.decisions(conn)) == 3
