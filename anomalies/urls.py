app_name = "anomalies"
urlpatterns: list = []
