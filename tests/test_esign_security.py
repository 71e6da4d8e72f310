# License AGPL-3.0 or later (https://www.gnu.org/licenses/agpl).
"""Access rights and multi-company."""
from odoo.exceptions import AccessError
from odoo.tests import new_test_user, tagged

from .common import EsignCommon


@tagged("post_install", "-at_install")
class TestSecurity(EsignCommon):

    def test_salesman_cannot_read_or_write_credentials(self):
        provider = self.provider.with_user(self.salesman)
        self.assertEqual(provider.name, "Demo")  # the provider itself is readable
        for field in ("webhook_secret", "jwt_private_key", "api_base_url_override", "jwk_kid"):
            with self.assertRaises(AccessError, msg=field):
                provider.read([field])
        with self.assertRaises(AccessError):
            provider.write({"webhook_secret": "stolen"})
        self.assertTrue(self.provider.with_user(self.env.ref("base.user_admin")).read(["webhook_secret"]))

    def test_salesman_cannot_cancel_nor_delete(self):
        request, _result = self.send()
        with self.assertRaises(AccessError):
            request.with_user(self.salesman).unlink()
        self.assertTrue(request.with_user(self.salesman).read(["state"]))

    def test_user_without_esign_group_cannot_send(self):
        plain = new_test_user(self.env, "plain_user", groups="base.group_user", name="Plain User")
        with self.assertRaises(AccessError):
            self.send(user=plain)
        self.assertFalse(self.agreement.esign_request_ids)

    def test_other_company_cannot_see_requests_or_providers(self):
        request, _result = self.send()
        other_company = self.env["res.company"].create({"name": "Other Co"})
        outsider = new_test_user(self.env, "esign_outsider",
                                 groups="base.group_user,esign_connector.group_esign_manager",
                                 company_id=other_company.id, company_ids=[other_company.id],
                                 name="Olga Outsider")
        self.assertFalse(self.env["esign.request"].with_user(outsider).search([("id", "=", request.id)]))
        self.assertFalse(self.env["esign.provider"].with_user(outsider).search([("id", "=", self.provider.id)]))
        with self.assertRaises(AccessError):
            request.with_user(outsider).read(["state"])
        with self.assertRaises(AccessError):
            request.event_ids[:1].with_user(outsider).read(["payload"])

    def test_salesman_sees_only_his_own_provider_account(self):
        other = new_test_user(self.env, "esign_sales2", groups="base.group_user,esign_connector.group_esign_user",
                              name="Other Seller")
        self.env["esign.user.account"].create({"provider_id": self.provider.id, "user_id": other.id,
                                               "login": "other@acme.example.com"})
        domain = [("provider_id", "=", self.provider.id)]  # demo data may hold accounts of its own
        visible = self.env["esign.user.account"].with_user(self.salesman).search(domain)
        self.assertEqual(visible.user_id, self.salesman)
        seen_by_manager = self.env["esign.user.account"].with_user(self.manager).search(domain).user_id
        self.assertTrue(self.salesman | other <= seen_by_manager, seen_by_manager)
