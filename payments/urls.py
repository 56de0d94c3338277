from django.urls import path

from payments import views_keys
from payments.bindings import views as views_bindings
from payments.delivery import views as views_delivery
from payments.linkages import views
from payments.partners import views as views_partners
from payments.risk import views as views_risk
from payments.settlements import views as views_settlements

urlpatterns = [
    path("linkages/<str:public_id>/unlink/", views.linkage_unlink, name="linkage_unlink"),
    path("sandbox/", views.sandbox_receipts, name="sandbox_receipts"),
    path("manage/", views_partners.partner_list, name="partner_list"),
    path("manage/new/", views_partners.partner_create, name="partner_create"),
    path("manage/<slug:code>/", views_partners.partner_detail, name="partner_detail"),
    path("manage/<slug:code>/keys/new/", views_partners.partner_key_add, name="partner_key_add"),
    path("manage/<slug:code>/keys/<str:key_id>/revoke/", views_partners.partner_key_revoke, name="partner_key_revoke"),
    path("manage/<slug:code>/webhook/", views_partners.partner_webhook, name="partner_webhook"),
    path("manage/<slug:code>/state/", views_partners.partner_state, name="partner_state"),
    path("manage/<slug:code>/rate-limit/", views_partners.partner_rate_limit, name="partner_rate_limit"),
    path("signing-keys/", views_keys.portal_key_list, name="portal_key_list"),
    path("signing-keys/rotate/", views_keys.portal_key_rotate, name="portal_key_rotate"),
    path("signing-keys/activate/", views_keys.portal_key_activate, name="portal_key_activate"),
    path("monitor/", views_delivery.monitor_index, name="monitor_index"),
    path("monitor/<slug:code>/", views_delivery.monitor_partner, name="monitor_partner"),
    path("monitor/<slug:code>/deliveries/", views_delivery.monitor_deliveries, name="monitor_deliveries"),
    path("monitor/<slug:code>/events/<str:public_id>/", views_delivery.monitor_event, name="monitor_event"),
    path("monitor/<slug:code>/events/<str:public_id>/replay/", views_delivery.monitor_replay, name="monitor_replay"),
    path("family-bindings/", views_bindings.binding_queue, name="binding_queue"),
    path("family-bindings/<str:public_id>/", views_bindings.binding_detail, name="binding_detail"),
    path("family-bindings/<str:public_id>/<slug:action>/", views_bindings.binding_action, name="binding_action"),
    path("settlements/", views_settlements.settlement_list, name="settlement_list"),
    path("settlements/<str:public_id>/", views_settlements.settlement_detail, name="settlement_detail"),
    path("risk/", views_risk.risk_queue, name="risk_queue"),
    path("risk/<int:pk>/", views_risk.risk_detail, name="risk_detail"),
    path("risk/<int:pk>/decide/", views_risk.risk_decide, name="risk_decide"),
]
