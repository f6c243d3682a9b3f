"""Pages and endpoints reached from marketing email by people without an account (and by
their mail clients and our mail provider). None needs a login, a session or a CSRF
cookie; each trusts only a signed token or a signed request, and a bad one changes nothing.
"""

import json

from django import forms
from django.http import Http404, HttpResponse, HttpResponseForbidden, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from leads.models import Contact

from .compliance import (
    FEEDBACK_KINDS,
    NO_EMAIL,
    contact_unsubscribe,
    delivery_feedback_record,
    feedback_signature_valid,
    read_unsubscribe_token,
)
from .models import EmailLink
from .tracking import PIXEL_GIF, email_record_click, email_record_open, read_id_token


# RFC 8058: a mail client's one-click POST carries no cookie and no CSRF token; the signed
# token in the URL is what authorises it. A forged POST would need that token too.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    ids = read_unsubscribe_token(token)
    contact = Contact.objects.filter(pk=ids[0]).first() if ids else None
    if contact is None:
        return render(request, "nurturing/public/link_invalid.html", status=404)
    if request.method == "GET":  # mail scanners follow links: a GET only asks
        context = {"address": contact.email, "already": contact.email_consent_status in NO_EMAIL}
        return render(request, "nurturing/public/unsubscribe_confirm.html", context)
    # RFC 8058's body is "List-Unsubscribe=One-Click"; the confirmation page's button sends none.
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    contact_unsubscribe(
        contact_id=contact.pk, email_id=ids[1], source="one-click unsubscribe" if one_click else "unsubscribe page"
    )
    # 200 with the answer itself, never a redirect: one-click clients do not follow one.
    return render(request, "nurturing/public/unsubscribed.html", {"address": contact.email})


@never_cache
@require_safe
def open_pixel(request, token):
    email_id = read_id_token(token, purpose="open")
    if email_id is None:
        raise Http404
    email_record_open(email_id=email_id)
    return HttpResponse(PIXEL_GIF, content_type="image/gif")


@never_cache
@require_safe
def click(request, token):
    """Redirect to the link stored when the email was prepared; nothing in the request can
    choose the target, so this is no open redirect."""
    link_id = read_id_token(token, purpose="click")
    link = EmailLink.objects.select_related("email").filter(pk=link_id).first() if link_id else None
    if link is None:
        raise Http404
    if request.method == "GET":  # a HEAD is a prefetch, not a person clicking
        email_record_click(link=link)
    return HttpResponseRedirect(link.url)


class FeedbackForm(forms.Form):
    id = forms.CharField(max_length=150, help_text="The provider's event id (a resent report counts once).")
    recipient = forms.EmailField()
    kind = forms.ChoiceField(choices=[(kind, kind) for kind in sorted(FEEDBACK_KINDS)])
    message_id = forms.CharField(max_length=300, required=False)


@csrf_exempt  # called by the mail provider, authorised by the HMAC signature instead
@require_POST
def delivery_feedback(request):
    """A bounce or complaint: JSON {id, recipient, kind: hard|soft|complaint, message_id?},
    signed in the X-CRM-Signature header (see compliance.feedback_signature_valid)."""
    if not feedback_signature_valid(request.body, request.headers.get("X-CRM-Signature", "")):
        return HttpResponseForbidden("Bad signature.")
    try:
        payload = json.loads(request.body)
    except ValueError:
        payload = None
    form = FeedbackForm(payload if isinstance(payload, dict) else {})
    if not form.is_valid():
        return JsonResponse({"errors": form.errors}, status=400)
    data = form.cleaned_data
    delivery_feedback_record(
        recipient=data["recipient"], kind=data["kind"], event_id=data["id"], message_id=data["message_id"]
    )
    return JsonResponse({"status": "recorded"})
