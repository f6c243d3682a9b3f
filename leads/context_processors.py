from .roles import ADMIN, MANAGER, MARKETING, SALES, user_roles


def roles(request):
    held = user_roles(request.user)
    return {
        "is_sales": SALES in held,
        "is_marketing": MARKETING in held,
        "is_admin": ADMIN in held,
        "can_see_reports": bool(held & {MARKETING, MANAGER, ADMIN}),
    }
